//! `dloop resume`: continue a paused, crashed or timed-out run where it stopped.

use clap::Args;
use dloop_core::HumanDuration;
use dloop_core::transition::ResumeRequest;
use dloop_runtime::runs::{ResumeInput, resume_run};

use crate::commands::session::{self, context_pairs};
use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::load;
use crate::project::{LoopFile, Project, resolve_loop};
use crate::render::human;
use crate::runs::{RunInfo, resolve, resolve_only};
use crate::storage::Storage;

/// Continue a paused, crashed or timed-out run; a finished step is never run again
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop resume                             the project's only resumable run
  dloop resume fix-tests --max-steps 10    that loop's paused run, 10 more steps
  dloop resume 3f2a --skip-to done         a run named by its 4-hex suffix, at another state
  dloop resume fix-tests --reload          accept an edited loop file
  dloop resume fix-tests --max-cost-usd 5  a run paused at its budget, with a larger one")]
pub(crate) struct ResumeArgs {
    /// The run: an id, a unique id prefix, or a loop name (its resumable run). Default: the
    /// project's only resumable run
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::run_ids))]
    pub(crate) run: Option<String>,
    /// Sets or replaces a context value (repeatable): -c KEY=VALUE
    #[arg(short = 'c', long = "context", value_name = "K=V")]
    pub(crate) context: Vec<String>,
    /// Let the run take N more steps (default for a run paused at max_steps: the loop's limit
    /// more)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_steps: Option<u64>,
    /// A new wall clock limit for the whole run (must exceed its elapsed time)
    #[arg(long, value_name = "DUR")]
    pub(crate) timeout: Option<HumanDuration>,
    /// Accept a loop file that changed since the run started
    #[arg(long)]
    pub(crate) reload: bool,
    /// Re-run an interrupted action of an `on_interrupted: stop` state
    #[arg(long, conflicts_with = "skip_to")]
    pub(crate) rerun: bool,
    /// Continue from STATE instead of where the run stopped
    #[arg(long, value_name = "STATE", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::state_names))]
    pub(crate) skip_to: Option<String>,
    /// Print the run as JSON (the `inspect --json` shape) on stdout when the session ends
    #[arg(long)]
    pub(crate) json: bool,
    /// Show every line each action prints as it arrives (indented under the step lines)
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,
    #[command(flatten)]
    pub(crate) budget: session::BudgetFlags,
    #[command(flatten)]
    pub(crate) session: session::SessionFlags,
}

/// Resumes a run.
pub(crate) fn cmd_resume(ctx: &Ctx, args: ResumeArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    if args.session.detaches() {
        return crate::detach::spawn(ctx, &storage, "resume");
    }
    let store = storage.store();
    // A sub-loop run whose parent has not finished is resumed through its parent, unless named.
    let resumable = |info: &RunInfo| info.is_resumable() && held_by(store, info).is_none();
    let run_id = match &args.run {
        Some(query) => resolve(store, query, "resumable", &resumable)?,
        None => resolve_only(store, "resumable", &resumable)?,
    };
    // A sub-loop run named on its own: refused while its parent is live (the parent drives
    // it); otherwise it may be resumed alone (with a decision or a larger limit only it can
    // use), and the parent takes its result when it resumes.
    let parent = held_by(store, &crate::runs::load_summary(store, &run_id)?);
    if let Some(parent) = &parent
        && store.is_live(&parent.run_id).unwrap_or(false)
    {
        return Err(CliError::new(
            ErrorKind::Refused,
            format!(
                "run {run_id} is a sub-loop of run {} (state `{}`, step {}), which is live and \
                 drives it",
                parent.run_id, parent.state, parent.step
            ),
        )
        .with_hint(format!(
            "`dloop stop {}` pauses both; `dloop resume {}` continues both",
            parent.run_id, parent.run_id
        )));
    }
    let meta = store
        .read_meta(&run_id)
        .map_err(|e| crate::runs::store_error(e, &run_id))?;
    // The loop file as it is now, to notice a change since the run started. A file that is
    // gone is no change: the run keeps its own copy.
    let current_file = current_loop_file(ctx, &project, &meta);
    let current_definition = match current_file {
        // `--reload` takes the file only as `dloop validate` accepts it (the same loader).
        Some(path) if args.reload => Some(load_for_reload(
            ctx,
            &project,
            LoopFile {
                name: meta.loop_name.clone(),
                path,
            },
            &format!("--reload refuses it and run {run_id} is unchanged"),
        )?),
        Some(path) => std::fs::read_to_string(path).ok(),
        None => None,
    };
    let input = ResumeInput {
        run_id: run_id.clone(),
        current_definition,
        reload: args.reload,
        request: ResumeRequest {
            // N more steps, as the default adds the loop's limit to the steps taken: the core
            // takes an absolute budget.
            max_steps: match args.max_steps {
                Some(more) => Some(crate::runs::load_summary(store, &run_id)?.state.step + more),
                None => None,
            },
            timeout_ms: args.timeout.map(HumanDuration::as_millis),
            context: context_pairs(&args.context)?,
            rerun: args.rerun,
            skip_to: args.skip_to.clone(),
            budget: args.budget.budget(),
        },
        scope: args.session.scope_request(&storage),
    };
    let (options, mut progress) = session::prepare(ctx, &project, args.json, args.verbose)?;
    let ready = crate::detach::Ready::from_flags(&args.session.child);
    let mut observer = crate::detach::Announce::new(&mut progress, ready, &storage);
    let local_dir = |id: &str| storage.local_dir(id);
    let end = resume_run(store, &local_dir, &input, options, &mut observer)
        .map_err(|e| session::runtime_error(e, Some(&run_id)))?;
    drop(observer);
    drop(progress);
    crate::notify::after_session(ctx, args.session.notify.as_deref(), &project.root, &end);
    let exit = session::finish(ctx, store, &end, args.json)?;
    if let Some(parent) = parent {
        ctx.ui.status(&format!(
            "note: run {run_id} is a sub-loop of run {} (state `{}`, step {}); `dloop resume {}` \
             continues the parent{}\n",
            parent.run_id,
            parent.state,
            parent.step,
            parent.run_id,
            if end.status.is_resumable() {
                ", and this run with it"
            } else {
                " with this run's result"
            }
        ));
    }
    Ok(exit)
}

/// The parent of sub-loop run `info` when that parent has not finished (resuming the parent
/// resumes the child); `None` for a top-level run, or one whose parent finished or cannot be
/// read.
fn held_by(store: &dyn dloop_store::Store, info: &RunInfo) -> Option<dloop_core::state::ParentRun> {
    let parent = info.state.parent.as_ref()?;
    let (state, _) = store.load_state(&parent.run_id).ok()?;
    (!state.status.is_finished()).then(|| parent.clone())
}

/// The file of `meta`'s loop as it is now: the path the run started from, else the project's
/// loop of that name; `None` when neither is a file (the run keeps its own copy).
pub(crate) fn current_loop_file(
    ctx: &Ctx,
    project: &Project,
    meta: &dloop_store::RunMeta,
) -> Option<std::path::PathBuf> {
    meta.loop_path
        .as_deref()
        .map(std::path::PathBuf::from)
        .or_else(|| {
            resolve_loop(&meta.loop_name, &ctx.cwd, Some(project))
                .ok()
                .map(|f| project.root.join(f.path))
        })
        .filter(|path| path.is_file())
}

/// The text of a loop file given with `--reload` (resume, fork), taken only as `dloop validate`
/// accepts it (the same loader); an invalid file shows its problems and is refused, saying
/// `unchanged` (who refused it and what was not done).
pub(crate) fn load_for_reload(
    ctx: &Ctx,
    project: &Project,
    file: LoopFile,
    unchanged: &str,
) -> Result<String, CliError> {
    let loaded = load::load_checked(file, &ctx.cwd, Some(project));
    if !loaded.is_valid() {
        ctx.ui
            .status(&human::diagnostics(&loaded, ctx.ui.color_stderr));
        return Err(CliError::new(
            ErrorKind::Invalid,
            format!("{} is not a valid loop; {unchanged}", loaded.display),
        )
        .with_hint(format!(
            "`dloop validate {}` lists every problem",
            loaded.display
        )));
    }
    Ok(loaded.source)
}
