//! `dloop fork RUN --at STEP [--reload]`: a new run with the source's history up to the end of
//! STEP, continued live from step STEP+1; the source run is left untouched.

use clap::Args;
use dloop_core::transition::ResumeRequest;
use dloop_runtime::fork::fork_run;
use dloop_runtime::runs::{ResumeInput, resume_run};

use crate::commands::session::{self, runtime_error};
use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::project::{LoopFile, Project};
use crate::runs::resolve_newest;
use crate::storage::Storage;

/// Start a new run from a run's history up to a step, and continue it live
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop fork fix-tests --at 4             a new run with steps 1-4 of fix-tests, running from step 5
  dloop fork fix-tests --at 4 --reload    the same, with the loop file as it is now")]
pub(crate) struct ForkArgs {
    /// The run: an id, a unique id prefix, or a loop name (its newest run)
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::run_ids))]
    pub(crate) run: String,
    /// The step whose end the new run starts from
    #[arg(long, value_name = "STEP")]
    pub(crate) at: u64,
    /// Continue with the loop file as it is now instead of the source run's definition
    #[arg(long)]
    pub(crate) reload: bool,
    /// Print the run as JSON (the `inspect --json` shape) on stdout when the session ends
    #[arg(long)]
    pub(crate) json: bool,
    /// Show every line each action prints as it arrives (indented under the step lines)
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,
}

/// Forks a run and drives the fork.
pub(crate) fn cmd_fork(ctx: &Ctx, args: ForkArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let source = resolve_newest(store, &args.run)?;
    let meta = store
        .read_meta(&source)
        .map_err(|e| crate::runs::store_error(e, &source))?;
    // `--reload`: the loop file as it is now, checked as `dloop validate` (and `resume
    // --reload`) check it, before anything is created.
    let current_definition = if args.reload {
        let path = crate::commands::resume::current_loop_file(ctx, &project, &meta)
            .ok_or_else(|| {
                CliError::new(
                    ErrorKind::Invalid,
                    format!(
                        "the loop file of run {source} (`{}`) is gone; --reload has nothing to load",
                        meta.loop_name
                    ),
                )
            })?;
        Some(crate::commands::resume::load_for_reload(
            ctx,
            &project,
            LoopFile {
                name: meta.loop_name.clone(),
                path,
            },
            "--reload refuses it and no fork was made",
        )?)
    } else {
        None
    };
    let argv: Vec<String> = std::env::args().collect();
    let forked =
        fork_run(store, &source, args.at, argv).map_err(|e| runtime_error(e, Some(&source)))?;
    let id = forked.run_id;
    ctx.ui.status(&format!(
        "forked run {source} at the end of step {} as run {id}; continuing with step {}\n",
        args.at,
        args.at + 1
    ));
    let input = ResumeInput {
        run_id: id.clone(),
        current_definition,
        reload: args.reload,
        request: ResumeRequest::default(),
        // The loop's scope is taken as `dloop run` takes it (refused while another run holds it).
        scope: Some(dloop_runtime::scope::ScopeRequest {
            registry_dir: storage.scopes_dir(),
            queue: false,
            queue_timeout: None,
        }),
    };
    let (options, mut progress) = session::prepare(ctx, &project, args.json, args.verbose)?;
    let local_dir = |id: &str| storage.local_dir(id);
    let end = resume_run(store, &local_dir, &input, options, &mut progress)
        .map_err(|e| runtime_error(e, Some(&id)))?;
    drop(progress);
    session::finish(ctx, store, &end, args.json)
}
