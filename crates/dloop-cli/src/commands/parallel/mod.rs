//! `dloop parallel`: one run of a loop per task, each in its own worktree, integrated into a
//! target branch; and `parallel status | retry | stop | resume` on the newest (or `--id`)
//! parallel run. The state file and the integration protocol are in
//! `dloop_runtime::parallel`; the coordinator's loop is [`coordinator`].

mod coordinator;
mod tasks;

use std::path::PathBuf;
use std::process::Command;

use clap::{Args, Subcommand};
use dloop_runtime::parallel::state::{
    self, Integrate, LOCK_FILE, ParallelState, STATE_FILE, Worker, WorkerStatus,
};

use crate::commands::session::runtime_error;
use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::project::{Project, resolve_loop};
use crate::render::json::to_pretty;
use crate::storage::Storage;
use coordinator::{Coordinator, now};

/// Run a loop once per task, each in its own git worktree, and integrate the results
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:
  dloop parallel fix --tasks tasks.yaml -j 3            three at a time, each merged into the current branch
  dloop parallel fix --tasks t.jsonl --integrate push --gate 'cargo test'
  dloop parallel status                                 the newest parallel run's workers
  dloop parallel retry task-7                           integrate (or run) a blocked or failed task again"
)]
pub(crate) struct ParallelArgs {
    #[command(subcommand)]
    pub(crate) command: Option<ParallelCommand>,
    /// The loop: a name from `.loops/`, or a path to a .yaml/.yml file
    #[arg(value_name = "LOOP", required = true)]
    pub(crate) loop_arg: Option<String>,
    /// The tasks: a YAML, JSON or JSON Lines file of objects with an `id`; their other fields
    /// become each run's context
    #[arg(long, value_name = "FILE", required = true)]
    pub(crate) tasks: Option<PathBuf>,
    /// Workers at once
    #[arg(short = 'j', long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) jobs: u16,
    /// The branch results go to (default: the current branch)
    #[arg(long, value_name = "BRANCH")]
    pub(crate) target: Option<String>,
    /// How results come back: rebase and fast-forward the target (merge), the same onto
    /// origin and push (push), or leave each branch for review (branch)
    #[arg(long, value_enum, default_value = "merge")]
    pub(crate) integrate: IntegrateArg,
    /// A command (bash) that must pass in a worker's worktree before it is integrated
    #[arg(long, value_name = "CMD")]
    pub(crate) gate: Option<String>,
    /// Keep the branches of integrated workers (default: deleted once in the target)
    #[arg(long)]
    pub(crate) keep_branches: bool,
}

/// `--integrate`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum IntegrateArg {
    /// Rebase onto the target and fast-forward it
    Merge,
    /// Rebase onto origin's target and push (never forced)
    Push,
    /// Leave the branch for review
    Branch,
}

/// The parallel run's subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ParallelCommand {
    /// Show each worker: status, run, attempts, last error
    Status(PickArgs),
    /// Integrate a blocked worker again, or run a failed one again (resumes its run when it can)
    Retry(RetryArgs),
    /// Stop the coordinator and its running workers (resume continues)
    Stop(PickArgs),
    /// Continue a stopped or killed coordinator: running workers go on, finished ones are not
    /// run again, integrated ones are not integrated again
    Resume(PickArgs),
}

/// Which parallel run.
#[derive(Debug, Args)]
pub(crate) struct PickArgs {
    /// The parallel run's id (default: the newest)
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// Print the state as JSON (status only)
    #[arg(long)]
    pub(crate) json: bool,
}

/// `parallel retry`.
#[derive(Debug, Args)]
pub(crate) struct RetryArgs {
    /// The task's id
    #[arg(value_name = "TASK")]
    pub(crate) task: String,
    /// The parallel run's id (default: the newest)
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
}

/// Runs `dloop parallel ...`.
pub(crate) fn cmd_parallel(ctx: &Ctx, args: ParallelArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let Some(root) = dloop_runtime::git::Git::toplevel(&project.root) else {
        return Err(CliError::usage(format!(
            "dloop parallel needs a git repository, and {} is not in one",
            project.root.display()
        )));
    };
    match args.command {
        None => start(ctx, &storage, &project, root, args),
        Some(ParallelCommand::Status(pick)) => status(ctx, &storage, &pick),
        Some(ParallelCommand::Resume(pick)) => {
            let dir = pick_dir(&storage, pick.id.as_deref())?;
            Coordinator::open(ctx, &storage, root, dir, None)?.drive()
        }
        Some(ParallelCommand::Stop(pick)) => stop(ctx, &storage, &pick),
        Some(ParallelCommand::Retry(retry)) => {
            let dir = pick_dir(&storage, retry.id.as_deref())?;
            let mut coordinator = Coordinator::open(ctx, &storage, root, dir, None)?;
            let Some(worker) = coordinator.state.worker_mut(&retry.task) else {
                return Err(CliError::usage(format!("no task `{}`", retry.task)));
            };
            again(worker)?;
            coordinator.save()?;
            coordinator.drive()
        }
    }
}

/// `retry`: a blocked worker is integrated again; a failed one's run is resumed when its run
/// can be (the coordinator does that for a paused run) or started anew.
fn again(worker: &mut Worker) -> Result<(), CliError> {
    let now = now();
    match worker.status {
        WorkerStatus::Blocked => worker.set(WorkerStatus::Integrating, &now, None),
        WorkerStatus::Failed if worker.run_id.is_some() && worker.branch.is_some() => {
            // The coordinator resumes a paused run, fails a finished one: a failed run
            // starts anew (its old worktree and branch stay for a person to look at).
            worker.attempts = 0;
            worker.set(WorkerStatus::Running, &now, None);
        }
        WorkerStatus::Failed => worker.set(WorkerStatus::Queued, &now, None),
        other => {
            return Err(CliError::new(
                ErrorKind::Refused,
                format!(
                    "task `{}` is {}; only a blocked or failed task is retried",
                    worker.task,
                    other.as_str()
                ),
            ));
        }
    }
    Ok(())
}

fn start(
    ctx: &Ctx,
    storage: &Storage,
    project: &Project,
    root: PathBuf,
    args: ParallelArgs,
) -> CmdResult {
    let loop_arg = args.loop_arg.expect("required without a subcommand");
    let tasks_path = args.tasks.expect("required without a subcommand");
    let file = resolve_loop(&loop_arg, &ctx.cwd, Some(project))?;
    let loop_path = std::fs::canonicalize(ctx.cwd.join(&file.path))
        .map_err(|e| CliError::io(format!("reading {}", file.path.display()), e))?;
    let tasks = tasks::read(&ctx.cwd.join(&tasks_path))?;
    let git = dloop_runtime::git::Git::new(&root);
    let target = match args.target {
        Some(target) => target,
        None => git.run(["symbolic-ref", "--short", "HEAD"]).map_err(|_| {
            CliError::usage("HEAD is detached: name the branch results go to with --target")
        })?,
    };
    let id = unique_id(storage, &file.name)?;
    let now = now();
    let fresh = ParallelState {
        schema_version: state::SCHEMA_VERSION,
        id: id.clone(),
        loop_name: loop_path.display().to_string(),
        target,
        integrate: match args.integrate {
            IntegrateArg::Merge => Integrate::Merge,
            IntegrateArg::Push => Integrate::Push,
            IntegrateArg::Branch => Integrate::Branch,
        },
        gate: args.gate,
        jobs: usize::from(args.jobs),
        keep_branches: args.keep_branches,
        created_at: now.clone(),
        workers: tasks
            .into_iter()
            .map(|t| Worker::new(t.id, t.context, &now))
            .collect(),
        extra: Default::default(),
    };
    ctx.ui.status(&format!(
        "parallel {id}: {} task{} into {}\n",
        fresh.workers.len(),
        if fresh.workers.len() == 1 { "" } else { "s" },
        fresh.target
    ));
    let dir = storage.parallel_dir().join(&id);
    Coordinator::open(ctx, storage, root, dir, Some(fresh))?.drive()
}

/// A new parallel id: `<loop>-<n>`, the first `n` whose folder does not exist.
fn unique_id(storage: &Storage, loop_name: &str) -> Result<String, CliError> {
    let parent = storage.parallel_dir();
    std::fs::create_dir_all(&parent)
        .map_err(|e| CliError::io(format!("creating {}", parent.display()), e))?;
    for n in 1.. {
        let id = format!("{loop_name}-{n}");
        match std::fs::create_dir(parent.join(&id)) {
            Ok(()) => return Ok(id),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(CliError::io(format!("creating {}", parent.display()), e)),
        }
    }
    unreachable!("some n is free")
}

/// The folder of parallel run `id`, or of the newest one.
fn pick_dir(storage: &Storage, id: Option<&str>) -> Result<PathBuf, CliError> {
    let parent = storage.parallel_dir();
    if let Some(id) = id {
        let dir = parent.join(id);
        if id.contains('/') || !dir.join(STATE_FILE).is_file() {
            return Err(CliError::usage(format!("no parallel run `{id}`")));
        }
        return Ok(dir);
    }
    let newest = std::fs::read_dir(&parent)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter_map(|p| {
            // Read raw, not loaded: a file this version refuses is still the one to name.
            let text = std::fs::read_to_string(p.join(STATE_FILE)).ok()?;
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let created = value["created_at"].as_str().unwrap_or_default().to_owned();
            Some((created, p))
        })
        .max();
    newest.map(|(_, p)| p).ok_or_else(|| {
        CliError::usage("no parallel run in this project")
            .with_hint("`dloop parallel LOOP --tasks FILE` starts one")
    })
}

fn status(ctx: &Ctx, storage: &Storage, pick: &PickArgs) -> CmdResult {
    let dir = pick_dir(storage, pick.id.as_deref())?;
    let state = state::load(&dir.join(STATE_FILE)).map_err(|e| runtime_error(e, None))?;
    if pick.json {
        ctx.ui.print(&to_pretty(&state))?;
    } else {
        ctx.ui.print(&summary(&state))?;
    }
    Ok(Exit::Ok)
}

/// The workers as an aligned table.
pub(crate) fn summary(state: &ParallelState) -> String {
    let mut out = format!(
        "parallel {} ({} into {})\n",
        state.id,
        match state.integrate {
            Integrate::Merge => "merge",
            Integrate::Push => "push",
            Integrate::Branch => "branch",
        },
        state.target
    );
    let width = state
        .workers
        .iter()
        .map(|w| w.task.len())
        .max()
        .unwrap_or(4)
        .max(4);
    for w in &state.workers {
        out.push_str(&format!(
            "  {:width$}  {:11}  {:3}  {}{}\n",
            w.task,
            w.status.as_str(),
            w.attempts,
            w.run_id.as_deref().unwrap_or("-"),
            w.last_error
                .as_deref()
                .filter(|_| matches!(w.status, WorkerStatus::Blocked | WorkerStatus::Failed))
                .map(|e| format!("  {e}"))
                .unwrap_or_default()
        ));
    }
    out
}

fn stop(ctx: &Ctx, storage: &Storage, pick: &PickArgs) -> CmdResult {
    let dir = pick_dir(storage, pick.id.as_deref())?;
    let state = state::load(&dir.join(STATE_FILE)).map_err(|e| runtime_error(e, None))?;
    let pid: Option<i32> = std::fs::read_to_string(dir.join(LOCK_FILE))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let live = std::fs::File::open(dir.join(LOCK_FILE)).is_ok_and(|f| f.try_lock().is_err());
    if let (true, Some(pid)) = (live, pid) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    for worker in state
        .workers
        .iter()
        .filter(|w| w.status == WorkerStatus::Running)
    {
        if let Some(run) = &worker.run_id {
            let exe =
                std::env::current_exe().map_err(|e| CliError::io("finding the dloop binary", e))?;
            let _ = Command::new(exe)
                .args(["stop", run])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    ctx.ui.status(&format!(
        "stopping parallel {}; `dloop parallel resume` continues it\n",
        state.id
    ));
    Ok(Exit::Ok)
}
