//! The coordinator of a parallel run: starts workers (background runs in their own worktrees,
//! `dloop run LOOP --worktree -b`), watches them through the store, and integrates each one
//! whose run completed, one at a time.
//!
//! Durability: the state file (`parallel.json`) is saved before every side effect that must not be repeated
//! (a worker is `running` with its attempt counted before its run is started; the integration
//! intent is saved before the target moves), and the coordinator holds an exclusive `flock` on
//! `parallel/<id>/coordinator.lock` for its life. Workers are detached runs: a coordinator that is killed
//! leaves them working, and `dloop parallel resume` picks them up where they are (a run it
//! started but never recorded is found by its `--parallel-task` mark in `run.json`'s argv).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dloop_core::state::RunStatus;
use dloop_runtime::parallel::integrate::{Repo, integrate};
use dloop_runtime::parallel::state::{
    self, Integrate, LOCK_FILE, ParallelState, STATE_FILE, WorkerStatus,
};
use dloop_runtime::process::{StopFlag, StopLevel};
use dloop_runtime::signals::SignalRecord;

use crate::commands::Ctx;
use crate::commands::session::runtime_error;
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::runs::load_summary;
use crate::storage::Storage;

/// How often the coordinator looks at its workers.
const POLL: Duration = Duration::from_millis(150);

/// Times a worker's run is resumed after it died before the worker is failed.
const MAX_ATTEMPTS: u32 = 5;

/// A coordinator holding its parallel run's lock.
pub(crate) struct Coordinator<'a> {
    ctx: &'a Ctx,
    storage: &'a Storage,
    root: PathBuf,
    dir: PathBuf,
    pub(crate) state: ParallelState,
    _lock: File,
}

/// The current time as the state file writes it.
pub(crate) fn now() -> String {
    dloop_runtime::driver::now().to_string()
}

/// Takes the lock of `parallel/<id>/` (refusing when a coordinator holds it) and writes our
/// pid in it, for `parallel stop`.
fn take_lock(dir: &Path) -> Result<File, CliError> {
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| CliError::io(format!("opening {}", path.display()), e))?;
    if file.try_lock().is_err() {
        let pid = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(CliError::new(
            ErrorKind::Refused,
            format!(
                "the coordinator of {} is live (pid {})",
                dir.display(),
                pid.trim()
            ),
        )
        .with_hint("`dloop parallel status` shows its workers; `dloop parallel stop` stops it"));
    }
    file.set_len(0)
        .and_then(|()| write!(file, "{}", std::process::id()))
        .map_err(|e| CliError::io(format!("writing {}", path.display()), e))?;
    Ok(file)
}

impl<'a> Coordinator<'a> {
    /// Takes the parallel run in `dir` (creating it with `fresh` when given).
    pub(crate) fn open(
        ctx: &'a Ctx,
        storage: &'a Storage,
        root: PathBuf,
        dir: PathBuf,
        fresh: Option<ParallelState>,
    ) -> Result<Self, CliError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
        let lock = take_lock(&dir)?;
        let path = dir.join(STATE_FILE);
        let state = match fresh {
            Some(fresh) => {
                state::save(&path, &fresh).map_err(|e| runtime_error(e, None))?;
                fresh
            }
            None => state::load(&path).map_err(|e| runtime_error(e, None))?,
        };
        Ok(Self {
            ctx,
            storage,
            root,
            dir,
            state,
            _lock: lock,
        })
    }

    /// Saves the state file.
    pub(crate) fn save(&self) -> Result<(), CliError> {
        state::save(&self.dir.join(STATE_FILE), &self.state).map_err(|e| runtime_error(e, None))
    }

    /// Drives every worker until each is settled, or a stop is asked for.
    pub(crate) fn drive(&mut self) -> Result<Exit, CliError> {
        let stop = Arc::new(StopFlag::default());
        dloop_runtime::signals::install(Arc::clone(&stop), Arc::new(SignalRecord::default()))
            .map_err(|e| CliError::io("installing signal handlers", e))?;
        loop {
            if stop.level() >= StopLevel::Drain {
                self.save()?;
                self.ctx.ui.status(&format!(
                    "parallel {} stopped; `dloop parallel resume` continues it\n",
                    self.state.id
                ));
                return Ok(Exit::Paused);
            }
            for index in 0..self.state.workers.len() {
                self.step(index)?;
            }
            if self.state.workers.iter().all(|w| w.status.is_settled()) {
                break;
            }
            std::thread::sleep(POLL);
        }
        let ok = self
            .state
            .workers
            .iter()
            .all(|w| w.status == WorkerStatus::Completed);
        self.ctx.ui.status(&super::summary(&self.state));
        Ok(if ok { Exit::Ok } else { Exit::Failed })
    }

    fn running(&self) -> usize {
        self.state
            .workers
            .iter()
            .filter(|w| matches!(w.status, WorkerStatus::Running))
            .count()
    }

    fn step(&mut self, index: usize) -> Result<(), CliError> {
        match self.state.workers[index].status {
            WorkerStatus::Queued if self.running() < self.state.jobs.max(1) => self.start(index),
            WorkerStatus::Running => self.watch(index),
            WorkerStatus::Integrating => {
                let repo = Repo {
                    main: self.root.clone(),
                    parallel_dir: self.storage.parallel_dir(),
                };
                let path = self.dir.join(STATE_FILE);
                let mut save = |s: &ParallelState| state::save(&path, s);
                integrate(&repo, &mut self.state, index, &now, &mut save)
                    .map_err(|e| runtime_error(e, None))?;
                let worker = &self.state.workers[index];
                self.ctx.ui.status(&format!(
                    "{}: {}{}\n",
                    worker.task,
                    worker.status.as_str(),
                    match (&worker.status, &worker.last_error) {
                        (WorkerStatus::Blocked, Some(e)) => format!(" ({e})"),
                        _ => String::new(),
                    }
                ));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The mark a worker's run carries in its argv (`run.json`), to find a run that was
    /// started but not recorded.
    fn mark(&self, task: &str) -> String {
        format!("{}/{task}", self.state.id)
    }

    /// Starts a queued worker's run. The attempt is counted and saved first.
    fn start(&mut self, index: usize) -> Result<(), CliError> {
        let now = now();
        let worker = &mut self.state.workers[index];
        worker.attempts += 1;
        worker.run_id = None;
        worker.set(WorkerStatus::Running, &now, None);
        self.save()?;
        let base = match self.state.integrate {
            Integrate::Push => {
                let git = dloop_runtime::git::Git::new(&self.root);
                let _ = git.run(["fetch", "--quiet", "origin", &self.state.target]);
                format!("origin/{}", self.state.target)
            }
            Integrate::Merge | Integrate::Branch => self.state.target.clone(),
        };
        let worker = &self.state.workers[index];
        let mut args: Vec<String> = vec![
            "run".into(),
            self.state.loop_name.clone(),
            "--worktree".into(),
            "--branch-from".into(),
            base,
            "-b".into(),
            "--parallel-task".into(),
            self.mark(&worker.task),
        ];
        for (key, value) in &worker.context {
            args.push("-c".into());
            args.push(format!("{key}={value}"));
        }
        let started = self.dloop(&args)?;
        self.record_run(index, started)
    }

    /// Runs `dloop ARGS` (a background start or resume) in the project; the run id it prints,
    /// or its error.
    fn dloop(&self, args: &[String]) -> Result<Result<String, String>, CliError> {
        let exe =
            std::env::current_exe().map_err(|e| CliError::io("finding the dloop binary", e))?;
        let out = Command::new(exe)
            .args(args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| CliError::io("starting a worker", e))?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(if out.status.success() && !stdout.is_empty() {
            Ok(stdout.lines().last().unwrap_or_default().to_owned())
        } else {
            // The first `error:` line says what went wrong; the rest is detail.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr
                .lines()
                .find(|l| l.starts_with("error:"))
                .or_else(|| stderr.lines().find(|l| !l.trim().is_empty()))
                .unwrap_or("the worker's run did not start");
            Err(first.to_owned())
        })
    }

    fn record_run(
        &mut self,
        index: usize,
        started: Result<String, String>,
    ) -> Result<(), CliError> {
        let now = now();
        match started {
            Ok(run_id) => {
                let meta = self.storage.store().read_meta(&run_id).ok();
                let worker = &mut self.state.workers[index];
                if let Some(wt) = meta.and_then(|m| m.worktree) {
                    worker.branch = Some(wt.branch);
                    worker.worktree = Some(wt.path);
                }
                worker.run_id = Some(run_id);
            }
            Err(error) => {
                let worker = &mut self.state.workers[index];
                worker.set(WorkerStatus::Failed, &now, Some(error));
            }
        }
        self.save()
    }

    /// Finds the run of a worker that was started by a coordinator that died before recording
    /// it.
    fn find_orphan(&self, task: &str) -> Option<String> {
        let mark = self.mark(task);
        let store = self.storage.store();
        let ids = store.run_ids().ok()?;
        ids.into_iter().rev().find(|id| {
            store.read_meta(id).is_ok_and(|meta| {
                meta.argv
                    .windows(2)
                    .any(|w| w[0] == "--parallel-task" && w[1] == mark)
            })
        })
    }

    /// Looks at a running worker's run and moves the worker on when it ended.
    fn watch(&mut self, index: usize) -> Result<(), CliError> {
        let now = now();
        let task = self.state.workers[index].task.clone();
        let Some(run_id) = self.state.workers[index].run_id.clone() else {
            match self.find_orphan(&task) {
                Some(run_id) => self.record_run(index, Ok(run_id))?,
                None => {
                    // Never started: start it (the attempt was counted).
                    self.state.workers[index].set(WorkerStatus::Queued, &now, None);
                    self.save()?;
                }
            }
            return Ok(());
        };
        let info = match load_summary(self.storage.store(), &run_id) {
            Ok(info) => info,
            // A run being created has no readable log for an instant.
            Err(_) => return Ok(()),
        };
        let worker = &mut self.state.workers[index];
        match info.state.status {
            RunStatus::Completed => {
                worker.set(WorkerStatus::Integrating, &now, None);
                self.save()?;
            }
            RunStatus::Failed | RunStatus::Cancelled => {
                let error = format!(
                    "run {run_id} {}: {}",
                    info.state.status.as_str(),
                    info.state
                        .last_error
                        .clone()
                        .or(info.state.message.clone())
                        .unwrap_or_default()
                );
                worker.set(WorkerStatus::Failed, &now, Some(error));
                self.save()?;
            }
            _ if info.live => {}
            status => {
                use dloop_core::event::PauseReason;
                let stopped = status == RunStatus::Running
                    || matches!(
                        info.state.pause_reason,
                        Some(PauseReason::Stopped | PauseReason::Interrupted)
                    );
                if stopped && worker.attempts < MAX_ATTEMPTS {
                    // Died or stopped with the coordinator: continue it.
                    worker.attempts += 1;
                    self.save()?;
                    let resumed = self.dloop(&["resume".into(), run_id.clone(), "-b".into()])?;
                    if let Err(error) = resumed {
                        let worker = &mut self.state.workers[index];
                        worker.set(WorkerStatus::Failed, &now, Some(error));
                        self.save()?;
                    }
                } else {
                    let error = format!(
                        "run {run_id} is {} ({}); `dloop parallel retry {task}` resumes it",
                        info.status(),
                        info.state.pause_reason.map_or("", |r| r.as_str())
                    );
                    worker.set(WorkerStatus::Failed, &now, Some(error));
                    self.save()?;
                }
            }
        }
        Ok(())
    }
}
