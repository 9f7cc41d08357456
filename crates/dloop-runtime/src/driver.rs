//! The step loop: load, decide, persist, act.
//!
//! A session owns one run (its lock) and repeats: ask `transition::next` for a decision, add the
//! records it implies to the current batch and fold them into the state, and, before anything
//! with a side effect (starting an action, sleeping, exiting), write the batch with one `write`
//! and one `fdatasync`. So the records of a finished step (result, verdict, transition, the next
//! state's entry and the next action's intent) reach the disk together, and a step costs one
//! sync (DESIGN.md principle 2).
//!
//! Invariants:
//! - the in-memory [`RunState`] is always the fold of exactly the records appended (each batch
//!   shares one timestamp, given to the store with it), so a snapshot of it is exact;
//! - an action is started only after its `action_started` intent is durable;
//! - an action that a stop ends is recorded as `action_interrupted`, never as finished, so
//!   resume runs it again on purpose (with the same idempotency key).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dloop_core::evaluate::{self, EvalInput};
use dloop_core::event::{ActionResult, ActionTimeout, Event, PauseReason};
use dloop_core::interpolate::Quoting;
use dloop_core::model::{ActionRef, Evaluate, LoopDef};
use dloop_core::state::{PendingAction, Phase, RunStatus, StepResult};
use dloop_core::transition::{self, Decision};
use dloop_core::{Record, RunState, Timestamp};
use dloop_store::{RunHandle, crash_point};

use crate::error::RuntimeError;
use crate::interp::{DEFAULT_CAPTURE_LIMIT, Lookup};
use crate::observer::RunObserver;
use crate::process::{self, ActionSpec, Ending, StopFlag, StopLevel};
use crate::signals::SignalRecord;

/// How a session runs, beyond the loop itself.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The project root: actions run there.
    pub project_root: PathBuf,
    /// The most bytes of an output a capture keeps.
    pub capture_limit: u64,
    /// Time between SIGTERM and SIGKILL when an action is ended.
    pub kill_grace: Duration,
    /// Records between two snapshots (`state.json`).
    pub snapshot_every: u64,
    /// Stop requests (raised by signal handlers).
    pub stop: Arc<StopFlag>,
    /// Which signals arrived.
    pub signals: Arc<SignalRecord>,
}

impl SessionOptions {
    /// Defaults for a project root: 1 MiB captures, 5 s grace, a snapshot every 1,000 records.
    pub fn new(project_root: PathBuf) -> Self {
        Self {
            project_root,
            capture_limit: DEFAULT_CAPTURE_LIMIT,
            kill_grace: Duration::from_secs(5),
            snapshot_every: 1000,
            stop: Arc::new(StopFlag::default()),
            signals: Arc::new(SignalRecord::default()),
        }
    }
}

/// The clock, as a [`Timestamp`].
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Timestamp::from_millis(ms)
}

/// One session of one run: holds its lock (through the handle) until dropped.
pub struct Session<'a, R: RunHandle> {
    def: &'a LoopDef,
    run: R,
    run_dir: PathBuf,
    state: RunState,
    batch: Vec<Event>,
    batch_ts: Option<Timestamp>,
    since_snapshot: u64,
    options: SessionOptions,
    observer: &'a mut dyn RunObserver,
    /// `bash`, resolved on PATH once: spawning by bare name makes every step try each PATH
    /// entry with execve.
    bash: String,
}

impl<'a, R: RunHandle> Session<'a, R> {
    /// A session over a run whose state is loaded (`state` is the fold of its whole log).
    pub fn new(
        def: &'a LoopDef,
        run: R,
        run_dir: PathBuf,
        state: RunState,
        options: SessionOptions,
        observer: &'a mut dyn RunObserver,
    ) -> Self {
        Self {
            def,
            run,
            run_dir,
            state,
            batch: Vec::new(),
            batch_ts: None,
            since_snapshot: 0,
            options,
            observer,
            bash: find_on_path("bash").unwrap_or_else(|| "bash".to_owned()),
        }
    }

    /// The run's state as of the last record.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// Adds `event` to the batch and folds it into the state.
    ///
    /// Every record of a batch carries the batch's first timestamp: the store writes them with
    /// that one timestamp, so the state folded here equals the state folded from disk.
    pub fn record(&mut self, event: Event) {
        let ts = *self.batch_ts.get_or_insert_with(now);
        let record = Record {
            seq: self.state.last_seq + 1,
            ts,
            event,
        };
        self.state.apply(&record);
        self.batch.push(record.event);
    }

    /// Writes the batch: one write, one fdatasync.
    ///
    /// # Errors
    /// The store's error; the run's log then refuses further writes.
    pub fn flush(&mut self) -> Result<(), RuntimeError> {
        let Some(ts) = self.batch_ts.take() else {
            return Ok(());
        };
        let events = std::mem::take(&mut self.batch);
        let records = self.run.append(&events, ts)?;
        debug_assert_eq!(records.last().map(|r| r.seq), Some(self.state.last_seq));
        self.since_snapshot += records.len() as u64;
        for record in &records {
            self.observer.on_record(record, &self.state);
        }
        if self.since_snapshot >= self.options.snapshot_every {
            self.snapshot()?;
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<(), RuntimeError> {
        self.run.save_snapshot(&self.state)?;
        self.since_snapshot = 0;
        Ok(())
    }

    /// Drives the run until it ends, pauses, or is stopped; returns its status. The batch is
    /// durable and a snapshot saved when this returns `Ok`.
    ///
    /// # Errors
    /// Failures of dloop's own I/O (the log, an output file).
    pub fn drive(&mut self) -> Result<RunStatus, RuntimeError> {
        loop {
            let decision = transition::next(self.def, &self.state, now());
            match decision {
                Decision::Record(event) => self.record(event),
                Decision::StartAction { intent, wait_ms } => {
                    if self.pause_if_stop_requested(StopLevel::Drain) {
                        continue;
                    }
                    if wait_ms > 0 {
                        self.flush()?;
                        self.sleep(Duration::from_millis(wait_ms));
                        if self.pause_if_stop_requested(StopLevel::Drain) {
                            continue;
                        }
                    }
                    self.record(intent);
                    self.flush()?;
                    crash_point("after_intent");
                }
                Decision::RunAction(pending) => self.run_action(pending)?,
                Decision::Evaluate => {
                    let event = self.evaluate();
                    self.record(event);
                }
                Decision::Stop(status) => {
                    self.flush()?;
                    self.snapshot()?;
                    return Ok(status);
                }
            }
        }
    }

    /// Records a pause when a stop at `level` or above was asked for.
    fn pause_if_stop_requested(&mut self, level: StopLevel) -> bool {
        if self.options.stop.level() < level {
            return false;
        }
        self.record(Event::RunPaused {
            reason: self.stop_reason(),
            message: None,
        });
        true
    }

    fn stop_reason(&self) -> PauseReason {
        if self.options.signals.was_interrupted() {
            PauseReason::Interrupted
        } else {
            PauseReason::Stopped
        }
    }

    /// Sleeps, waking early for a stop request.
    fn sleep(&self, total: Duration) {
        let end = Instant::now() + total;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            if left.is_zero() || self.options.stop.level() >= StopLevel::Drain {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }

    /// Writes a shell action's script next to its output and returns the argv running it.
    fn script_file(
        &self,
        pending: &PendingAction,
        script: &[u8],
    ) -> Result<Vec<String>, RuntimeError> {
        let rel = format!("{}.sh", pending.output_path.trim_end_matches(".out"));
        let path = self.run_dir.join(&rel);
        write_script(&path, script).map_err(|source| RuntimeError::Output {
            path: path.clone(),
            source,
        })?;
        Ok(vec![self.bash.clone(), path.display().to_string()])
    }

    fn run_action(&mut self, pending: PendingAction) -> Result<(), RuntimeError> {
        let state_def = &self.def.states[&pending.state];
        let lookup = Lookup {
            state: &self.state,
            run_dir: &self.run_dir,
            capture_limit: self.options.capture_limit,
        };
        let work_dir = work_dir(&self.run_dir);
        let argv = match state_def.action() {
            Some(ActionRef::Shell(command)) => match lookup.render_shell(command) {
                // Linux refuses a single argument over 128 KiB (E2BIG), and a command with a
                // large capture in it is that big: run it from a file instead. A script that is
                // not UTF-8 (only a `:raw` value can make it so) also goes through a file, so
                // its bytes reach bash unchanged.
                Ok(script) => match String::from_utf8(script) {
                    Ok(script) if script.len() <= MAX_INLINE_SCRIPT => {
                        Ok(vec![self.bash.clone(), "-c".to_owned(), script])
                    }
                    Ok(script) => Ok(self.script_file(&pending, script.as_bytes())?),
                    Err(not_utf8) => Ok(self.script_file(&pending, not_utf8.as_bytes())?),
                },
                Err(err) => Err(err.to_string()),
            },
            Some(ActionRef::Prompt(_)) => {
                Err("prompt actions need an agent runner, which this version does not have".into())
            }
            Some(ActionRef::SubLoop(_)) => {
                Err("sub-loop actions are not supported by this version".into())
            }
            None => Err(format!("state `{}` has no action", pending.state)),
        };
        let deadline = self.state.timeout_ms.map(|limit| {
            let left = limit.saturating_sub(self.state.elapsed_ms_at(now()));
            Instant::now() + Duration::from_millis(left)
        });
        let (result, ending) = match argv {
            Ok(argv) => {
                let spec = ActionSpec {
                    argv,
                    env: vec![
                        ("DLOOP_RUN_ID".into(), self.state.run_id.clone()),
                        ("DLOOP_RUN_DIR".into(), work_dir.display().to_string()),
                        ("DLOOP_STATE".into(), pending.state.clone()),
                        ("DLOOP_ITERATION".into(), pending.step.to_string()),
                        (
                            "DLOOP_IDEMPOTENCY_KEY".into(),
                            pending.idempotency_key.clone(),
                        ),
                    ],
                    cwd: self.options.project_root.clone(),
                    stdin: None,
                    timeout: state_def.timeout.map(|d| d.0),
                    idle_timeout: state_def.idle_timeout.map(|d| d.0),
                    run_deadline: deadline,
                    output_path: self.run_dir.join(&pending.output_path),
                    output_rel: pending.output_path.clone(),
                    kill_grace: self.options.kill_grace,
                };
                self.observer.on_action_start(&pending, &self.state);
                process::run_action(&spec, &self.options.stop).map_err(|source| {
                    RuntimeError::Output {
                        path: spec.output_path.clone(),
                        source,
                    }
                })?
            }
            Err(message) => (
                ActionResult {
                    output_path: pending.output_path.clone(),
                    error: Some(message),
                    ..ActionResult::default()
                },
                Ending::Finished,
            ),
        };
        crash_point("after_side_effect");
        if ending == Ending::Stopped || result.timed_out == Some(ActionTimeout::Run) {
            self.record(Event::ActionInterrupted {
                state: pending.state.clone(),
                step: pending.step,
                idempotency_key: pending.idempotency_key.clone(),
                reason: if ending == Ending::Stopped {
                    self.stop_reason().as_str().to_owned()
                } else {
                    "timed_out".to_owned()
                },
            });
            if ending == Ending::Stopped {
                self.record(Event::RunPaused {
                    reason: self.stop_reason(),
                    message: None,
                });
            } else {
                self.record(Event::RunTimedOut {
                    elapsed_ms: self.state.elapsed_ms_at(now()),
                });
            }
            return Ok(());
        }
        self.record(Event::ActionFinished {
            state: pending.state.clone(),
            step: pending.step,
            capture: state_def.capture.clone(),
            result,
        });
        Ok(())
    }

    /// Judges the current state: its action's result, or its evaluator's `source:`.
    fn evaluate(&self) -> Event {
        let current = self.state.current.clone().unwrap_or_default();
        let step = self.state.step;
        let evaluator = self.def.states[&current].evaluator();
        let lookup = Lookup {
            state: &self.state,
            run_dir: &self.run_dir,
            capture_limit: self.options.capture_limit,
        };
        let result = match &self.state.phase {
            Phase::Finished { result } => Some(result.clone()),
            _ => None,
        };
        let errored = |detail: String| Event::Evaluated {
            state: current.clone(),
            step,
            verdict: "error".to_owned(),
            detail: Some(detail),
            metric: None,
            convergence: None,
        };
        let text = match (evaluator.source(), &result) {
            (Some(source), _) => match lookup.render(source, Quoting::Verbatim) {
                Ok(text) => text,
                Err(err) => return errored(format!("source: {err}")),
            },
            (None, Some(result)) => lookup.output(&StepResult {
                state: current.clone(),
                step,
                verdict: None,
                result: result.clone(),
            }),
            (None, None) => String::new(),
        };
        let input = EvalInput {
            exit_code: result.as_ref().and_then(|r| r.exit_code),
            signal: result.as_ref().and_then(|r| r.signal),
            timed_out: result.as_ref().is_some_and(|r| r.timed_out.is_some()),
            error: result.as_ref().and_then(|r| r.error.as_deref()),
            text: &text,
        };
        let memory = self.state.convergence.get(&current);
        let Some(verdict) = evaluate::evaluate(&evaluator, &input, memory) else {
            return errored(
                "the llm evaluator needs an agent runner, which this version does not have".into(),
            );
        };
        let convergence = match (&evaluator, verdict.metric) {
            (Evaluate::Convergence(spec), Some(metric)) => Some(evaluate::update_memory(
                spec,
                &memory.cloned().unwrap_or_default(),
                metric,
            )),
            _ => None,
        };
        Event::Evaluated {
            state: current,
            step,
            verdict: verdict.verdict,
            detail: verdict.detail,
            metric: verdict.metric,
            convergence,
        }
    }

    /// Ends the session: the run handle (and its lock) is released.
    pub fn into_state(self) -> RunState {
        self.state
    }
}

/// The longest rendered shell command passed as `bash -c COMMAND`; longer ones run from a file.
const MAX_INLINE_SCRIPT: usize = 100 * 1024;

/// Writes a script file for a command too long for one argument (0600; not synced: it only
/// has to live as long as the action, and a re-run renders it again).
fn write_script(path: &Path, script: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(script)
}

/// The first executable `name` on `PATH`, as an absolute path.
fn find_on_path(name: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate.is_absolute()
                && std::fs::metadata(candidate)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|found| found.display().to_string())
}

/// The run's scratch folder (`${run.dir}`, `$DLOOP_RUN_DIR`): `work/` in its run folder.
pub fn work_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("work")
}
