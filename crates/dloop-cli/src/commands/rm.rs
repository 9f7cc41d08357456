//! `dloop rm`: delete one run. A live run is refused (stop it first); a paused, crashed or
//! timed-out one, which could still be resumed, only with `--force`; so is a finished sub-loop
//! run whose parent has not finished (the parent takes its result from it). The run is deleted under
//! its claim, so no process is cut off mid-write.

use clap::Args;

use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::project::Project;
use crate::runs::{resolve, store_error};
use crate::storage::Storage;

/// Delete one run (a finished one; --force also a paused or crashed one)
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop rm 3f2a                            delete a finished run
  dloop rm fix-tests-20261121T103207-a1b2 --force   also a paused one")]
pub(crate) struct RmArgs {
    /// The run: an id, a unique id prefix, or its 4-hex suffix
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::run_ids))]
    pub(crate) run: String,
    /// Also delete a run that could still be resumed (paused, crashed, timed out)
    #[arg(long)]
    pub(crate) force: bool,
}

/// Deletes one run.
pub(crate) fn cmd_rm(ctx: &Ctx, args: RmArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let run_id = resolve(store, &args.run, "", &|_| true)?;
    let mut run = store.open_run(&run_id).map_err(|e| match e.kind() {
        dloop_store::StoreErrorKind::Busy => CliError::new(
            ErrorKind::Refused,
            format!("run {run_id} is live: it cannot be deleted while it runs"),
        )
        .with_hint(format!("`dloop stop {run_id}` first")),
        _ => store_error(e, &run_id),
    })?;
    // Under the claim nobody appends: the status read here stays true until the run is gone.
    let (state, _) = run.load_state().map_err(|e| store_error(e, &run_id))?;
    if !state.status.is_finished() && !args.force {
        return Err(CliError::new(
            ErrorKind::Refused,
            format!(
                "run {run_id} can still be resumed ({}): `--force` deletes it anyway",
                state.status.as_str()
            ),
        )
        .with_hint(format!(
            "`dloop resume {run_id}` continues it; `dloop cancel {run_id}` ends it for good"
        )));
    }
    if !args.force
        && let Some(parent) = unfinished_parent(store, &state)
    {
        return Err(CliError::new(
            ErrorKind::Refused,
            format!(
                "run {run_id} is a sub-loop of run {parent}, which has not finished: the parent \
                 takes its result from it when it resumes (deleted, it would be run again from \
                 scratch); `--force` deletes it anyway"
            ),
        )
        .with_hint(format!(
            "`dloop resume {parent}` finishes the parent; then the run can go"
        )));
    }
    run.delete().map_err(|e| store_error(e, &run_id))?;
    ctx.ui.print(&format!("{run_id}\n"))?;
    ctx.ui.status(&format!("deleted run {run_id}\n"));
    Ok(Exit::Ok)
}

/// The parent of sub-loop run `state` when it exists and has not finished (as `dloop gc`
/// keeps such a child, `rm` refuses it without `--force`); a parent that cannot be read does
/// not hold the child.
fn unfinished_parent(
    store: &dyn dloop_store::Store,
    state: &dloop_core::RunState,
) -> Option<String> {
    let parent = state.parent.as_ref()?;
    let (above, _) = store.load_state(&parent.run_id).ok()?;
    (!above.status.is_finished()).then(|| parent.run_id.clone())
}
