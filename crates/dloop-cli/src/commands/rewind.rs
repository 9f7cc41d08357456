//! `dloop rewind RUN --to STEP`: the working tree back to how it was after STEP, and the run
//! paused there (resume continues with the next step; `fork --at STEP` starts a new run).

use clap::Args;
use dloop_runtime::rewind::rewind_run;

use crate::commands::session::runtime_error;
use crate::commands::{CmdResult, Ctx};
use crate::exit::Exit;
use crate::project::Project;
use crate::runs::{resolve_newest, store_error};
use crate::storage::Storage;

/// Put the working tree back to how it was after a step, and pause the run there
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop rewind fix-tests --to 2            files as after step 2; `dloop resume fix-tests` runs step 3
  dloop rewind fix-tests --to 2 --force    even over changes that are not the run's")]
pub(crate) struct RewindArgs {
    /// The run: an id, a unique id prefix, or a loop name (its newest run)
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::run_ids))]
    pub(crate) run: String,
    /// The step whose end the run goes back to
    #[arg(long, value_name = "STEP")]
    pub(crate) to: u64,
    /// Overwrite changes in the working tree that are not the run's
    #[arg(long)]
    pub(crate) force: bool,
}

/// Rewinds a run.
pub(crate) fn cmd_rewind(ctx: &Ctx, args: RewindArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let id = resolve_newest(store, &args.run)?;
    let run_dir = storage.local_dir(&id).map_err(|e| store_error(e, &id))?;
    let done = rewind_run(
        store,
        &id,
        args.to,
        args.force,
        &run_dir,
        &storage.runtime_dir(),
    )
    .map_err(|e| runtime_error(e, Some(&id)))?;
    ctx.ui.status(&format!(
        "rewound run {id} to the end of step {} ({} holds tree {}); `dloop resume {id}` \
         continues with step {}\n",
        args.to,
        done.work_tree.display(),
        &done.tree[..done.tree.len().min(12)],
        args.to + 1
    ));
    Ok(Exit::Ok)
}
