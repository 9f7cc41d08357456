//! `dloop diff RUN [STEP]`: what a step's action changed in the working tree (or the whole
//! run's changes so far), from the step checkpoints in the run's log.

use clap::Args;
use dloop_runtime::checkpoint::{checkpoints, diff_range};
use dloop_runtime::git::Git;

use crate::commands::session::runtime_error;
use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::project::Project;
use crate::runs::{resolve_newest, store_error};
use crate::storage::Storage;

/// Show what a step changed in the working tree (default: the whole run so far)
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop diff fix-tests                     everything the newest run of fix-tests changed
  dloop diff fix-tests 3                   what step 3's action changed
  dloop diff fix-tests 3 --stat            the files it changed, with counts")]
pub(crate) struct DiffArgs {
    /// The run: an id, a unique id prefix, or a loop name (its newest run)
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::run_ids))]
    pub(crate) run: String,
    /// The step number; default: from before the run's first step to after its last
    #[arg(value_name = "STEP")]
    pub(crate) step: Option<u64>,
    /// Only the changed files and their line counts (`git diff --stat`)
    #[arg(long)]
    pub(crate) stat: bool,
    /// Only the changed files' names
    #[arg(long, conflicts_with = "stat")]
    pub(crate) name_only: bool,
}

/// Prints a diff between two checkpoints.
pub(crate) fn cmd_diff(ctx: &Ctx, args: DiffArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let id = resolve_newest(store, &args.run)?;
    let records = store
        .records_from(&id, 1)
        .and_then(|records| records.collect::<Result<Vec<_>, _>>())
        .map_err(|e| store_error(e, &id))?;
    let all = checkpoints(&records);
    let (base, tree) = diff_range(&id, &all, args.step).map_err(|e| {
        runtime_error(e, Some(&id)).with_hint(format!("`dloop logs {id}` shows the steps it ran"))
    })?;
    // Trees live in the repository's object store, which every worktree shares: the project's
    // repository can show them even when the run's worktree is gone.
    let Some(top) = Git::toplevel(&project.root) else {
        return Err(CliError::new(
            ErrorKind::Usage,
            format!("{} is not in a git repository", project.root.display()),
        ));
    };
    let mut diff_args = vec!["diff", "--no-ext-diff", "--no-renames"];
    diff_args.push(if ctx.ui.color {
        "--color=always"
    } else {
        "--color=never"
    });
    if args.stat {
        diff_args.push("--stat");
    }
    if args.name_only {
        diff_args.push("--name-only");
    }
    diff_args.extend([base.as_str(), tree.as_str()]);
    let text = Git::new(top)
        .run(&diff_args)
        .map_err(|e| runtime_error(e.into(), Some(&id)))?;
    if !text.is_empty() {
        ctx.ui.print(&format!("{text}\n"))?;
    }
    Ok(Exit::Ok)
}
