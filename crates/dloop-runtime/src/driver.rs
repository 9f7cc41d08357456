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
//!   resume runs it again on purpose (with the same idempotency key);
//! - a prompt action's prompt is a run blob durable before the `action_started` that names it,
//!   and what a runner learns mid-action (the agent's session id) is appended and synced at
//!   once, in its own batch ([`prompt`]).

mod judge;
mod prompt;
mod sub_loop;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dloop_core::evaluate::{self, EvalInput};
use dloop_core::event::{ActionResult, ActionTimeout, Event, PauseReason};
use dloop_core::interpolate::Quoting;
use dloop_core::model::{ActionRef, Evaluate, LoopDef};
use dloop_core::state::{PendingAction, Phase, RunStatus, StepResult};
use dloop_core::transition::{self, Decision};
use dloop_core::{Record, RunState, Timestamp};
use dloop_store::{RunHandle, crash_point};

use crate::actions::output::StepOutput;
use crate::actions::shell::ShellRunner;
use crate::actions::{ActionIo, ActionNote, ActionOutcome, ActionRequest, ActionRunner, AgentCall};
use crate::agent_runners::{AgentRunners, NoAgents};
use crate::clock::{Clock, SystemClock};
use crate::error::RuntimeError;
use crate::interp::{DEFAULT_CAPTURE_LIMIT, Lookup};
use crate::observer::RunObserver;
use crate::process::{Limits, StopFlag, StopLevel};
use crate::signals::SignalRecord;

/// How a session runs, beyond the loop itself.
#[derive(Clone)]
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
    /// Time: record timestamps, delays, the run's timeout.
    pub clock: Arc<dyn Clock>,
    /// Runs `shell:` actions.
    pub shell: Arc<dyn ActionRunner>,
    /// The agent runners of `prompt:` states (default: none, and prompt states are refused).
    pub agents: Arc<dyn AgentRunners>,
    /// Called after each action that finished; what it returns (a step checkpoint) goes into
    /// the `action_finished` record ([`crate::checkpoint`]). Default: none.
    pub step_hook: Option<Arc<dyn crate::checkpoint::StepHook>>,
    /// `run --worktree`: the new run works in its own git worktree ([`crate::worktree`]).
    pub worktree: Option<crate::worktree::WorktreeRequest>,
    /// Take step checkpoints when the run works in a git work tree, leaving this folder
    /// (dloop's runtime folder) out of them; `None`: no checkpoints.
    pub checkpoints: Option<PathBuf>,
    /// Runs `loop:` states: the project's loops and the store of child runs
    /// ([`crate::subloop`]). Default: none, and a loop with a `loop:` state is refused.
    pub sub_loops: Option<Arc<dyn crate::subloop::SubLoopHost>>,
}

impl std::fmt::Debug for SessionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOptions")
            .field("project_root", &self.project_root)
            .field("capture_limit", &self.capture_limit)
            .field("kill_grace", &self.kill_grace)
            .field("snapshot_every", &self.snapshot_every)
            .finish_non_exhaustive()
    }
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
            clock: Arc::new(SystemClock),
            shell: Arc::new(ShellRunner::default()),
            agents: Arc::new(NoAgents),
            step_hook: None,
            worktree: None,
            checkpoints: None,
            sub_loops: None,
        }
    }
}

/// The system clock's time, as a [`Timestamp`] (for callers outside a session).
pub fn now() -> Timestamp {
    SystemClock.now()
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
    /// The run's output stream, opened at the first action.
    stream: Option<Box<dyn dloop_store::OutputStream>>,
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
            stream: None,
        }
    }

    /// The run's state as of the last record.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// How this session runs (its clock and stop flag, for waits outside the step loop).
    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    /// Adds `event` to the batch and folds it into the state.
    ///
    /// Every record of a batch carries the batch's first timestamp: the store writes them with
    /// that one timestamp, so the state folded here equals the state folded from disk.
    pub fn record(&mut self, event: Event) {
        let clock = &self.options.clock;
        let ts = *self.batch_ts.get_or_insert_with(|| clock.now());
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
            if crate::signals::take_suspend_request() {
                crate::signals::suspend_with(None);
            }
            let decision = transition::next(self.def, &self.state, self.options.clock.now());
            match decision {
                Decision::Record(event) => self.record(event),
                Decision::StartAction {
                    mut intent,
                    wait_ms,
                } => {
                    if self.pause_if_stop_requested(StopLevel::Drain) {
                        continue;
                    }
                    if wait_ms > 0 {
                        self.flush()?;
                        let why = if self.state.retries.values().any(|r| *r > 0) {
                            "retry backoff"
                        } else {
                            "delay before the next step"
                        };
                        self.observer.on_wait(Duration::from_millis(wait_ms), why);
                        self.sleep(Duration::from_millis(wait_ms));
                        if self.pause_if_stop_requested(StopLevel::Drain) {
                            continue;
                        }
                    }
                    self.prepare_prompt(&mut intent)?;
                    if let Event::ActionStarted { output_offset, .. } = &mut intent {
                        *output_offset = Some(self.stream()?.len());
                    }
                    self.record(intent);
                    self.flush()?;
                    crash_point("after_intent");
                }
                Decision::RunAction(pending) => self.run_action(pending)?,
                Decision::Evaluate => {
                    if !self.judge()? {
                        let event = self.evaluate();
                        self.record(event);
                    }
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

    /// Sleeps on the session's clock, waking early for a stop request or Ctrl-Z (the loop then
    /// suspends and works out what is left of the wait).
    fn sleep(&self, total: Duration) {
        let stop = &self.options.stop;
        self.options.clock.sleep(total, &|| {
            stop.level() >= StopLevel::Drain || crate::signals::suspend_requested()
        });
    }

    /// The run's output stream, opened (and created) on first use.
    fn stream(&mut self) -> Result<&mut dyn dloop_store::OutputStream, RuntimeError> {
        if self.stream.is_none() {
            self.stream = Some(self.run.open_output()?);
        }
        Ok(self.stream.as_deref_mut().expect("just opened"))
    }

    fn run_action(&mut self, pending: PendingAction) -> Result<(), RuntimeError> {
        let state_def = &self.def.states[&pending.state];
        if let Some(ActionRef::SubLoop(name)) = state_def.action() {
            let name = name.to_owned();
            return self.run_sub_loop(pending, &name);
        }
        let lookup = Lookup {
            state: &self.state,
            run_dir: &self.run_dir,
            capture_limit: self.options.capture_limit,
            outputs: Some(&self.run),
        };
        let work_dir = work_dir(&self.run_dir);
        let mut agent_setup = None;
        let rendered = match state_def.action() {
            Some(ActionRef::Shell(command)) => lookup
                .render_shell(command)
                .map(|script| (Arc::clone(&self.options.shell), script))
                .map_err(|err| err.to_string()),
            Some(ActionRef::Prompt(text)) => {
                self.prompt_setup(&pending, text)
                    .map(|(runner, prompt, setup)| {
                        agent_setup = Some(setup);
                        (runner, prompt)
                    })
            }
            // Answered by `run_sub_loop` above.
            Some(ActionRef::SubLoop(name)) => Err(format!("sub-loop `{name}` was not run")),
            None => Err(format!("state `{}` has no action", pending.state)),
        };
        let now = self.options.clock.now();
        let run_deadline = self.state.timeout_ms.map(|limit| {
            let left = limit.saturating_sub(self.state.elapsed_ms_at(now));
            Instant::now() + Duration::from_millis(left)
        });
        let profile_limits = agent_setup.as_ref().map(|a| a.limits).unwrap_or_default();
        let limits = Limits {
            timeout: state_def.timeout.map(|d| d.0).or(profile_limits.timeout),
            idle_timeout: state_def
                .idle_timeout
                .map(|d| d.0)
                .or(profile_limits.idle_timeout),
            run_deadline,
            kill_grace: self.options.kill_grace,
        };
        let env = [
            ("DLOOP_RUN_ID".to_owned(), self.state.run_id.clone()),
            ("DLOOP_RUN_DIR".to_owned(), work_dir.display().to_string()),
            ("DLOOP_STATE".to_owned(), pending.state.clone()),
            ("DLOOP_ITERATION".to_owned(), pending.step.to_string()),
            (
                "DLOOP_IDEMPOTENCY_KEY".to_owned(),
                pending.idempotency_key.clone(),
            ),
        ];
        let scratch = self.run_dir.join("scripts");
        let stream_path = self.run_dir.join(dloop_core::event::OUTPUT_STREAM);
        self.stream()?;
        debug_assert!(self.batch.is_empty(), "the intent's batch is durable");
        let Self {
            stream,
            observer,
            options,
            state,
            run,
            since_snapshot,
            ..
        } = self;
        let stream = stream.as_deref_mut().expect("opened above");
        let mut output = StepOutput::new(stream);
        // The replay key of the call (`dloop replay`), recorded with its result.
        let input_key;
        let outcome = match rendered {
            Ok((runner, text)) => {
                observer.on_action_start(&pending, state);
                let request = ActionRequest {
                    pending: &pending,
                    text: &text,
                    env: &env,
                    cwd: &options.project_root,
                    scratch: &scratch,
                    limits,
                    agent: agent_setup.as_ref().map(|a| AgentCall {
                        profile: &a.profile,
                        model: a.model.as_deref(),
                        extra_args: &a.args,
                        resume_session: a.resume.as_deref(),
                        max_turns: a.max_turns,
                    }),
                };
                input_key = Some(crate::replay::input_sha256(&request));
                let observer = std::cell::RefCell::new(&mut **observer);
                let mut watch = |s, bytes: &[u8]| observer.borrow_mut().on_output(s, bytes);
                let mut activity = |a: &_| observer.borrow_mut().on_agent_activity(a);
                // A note is appended and synced at once (agent steps are slow: the session id
                // must survive a crash long before the action ends). The first failure is kept
                // and returned after the action; later notes are dropped, as the log refuses
                // writes after a failed append anyway.
                let mut known_session = pending.session_id.clone();
                let mut note_failed = None;
                let mut note = |n: ActionNote| {
                    let ActionNote::SessionStarted { session_id } = n;
                    if note_failed.is_some() || known_session.as_ref() == Some(&session_id) {
                        return;
                    }
                    known_session = Some(session_id.clone());
                    let event = Event::AgentSession {
                        state: pending.state.clone(),
                        step: pending.step,
                        session_id,
                    };
                    let mut observer = observer.borrow_mut();
                    match prompt::append_now(run, state, &*options.clock, &mut **observer, event) {
                        Ok(n) => *since_snapshot += n,
                        Err(err) => note_failed = Some(err),
                    }
                };
                let mut io = ActionIo {
                    output: &mut output,
                    watch: &mut watch,
                    stop: &options.stop,
                    note: &mut note,
                    activity: &mut activity,
                };
                let outcome = runner.run(&request, &mut io);
                if let Some(err) = note_failed {
                    return Err(err);
                }
                Some(outcome.map_err(|source| RuntimeError::Output {
                    path: stream_path.clone(),
                    source,
                })?)
            }
            Err(message) => {
                let mut result =
                    output
                        .finish(Duration::ZERO)
                        .map_err(|source| RuntimeError::Output {
                            path: stream_path.clone(),
                            source,
                        })?;
                result.error = Some(message);
                crash_point("after_side_effect");
                self.record_finished(&pending, result);
                return Ok(());
            }
        };
        let ActionOutcome {
            process,
            session_id,
            agent,
        } = outcome.expect("an action ran");
        let mut result =
            output
                .finish(process.duration)
                .map_err(|source| RuntimeError::Output {
                    path: stream_path,
                    source,
                })?;
        result.exit_code = process.exit_code();
        result.signal = process.signal();
        result.timed_out = process.timed_out;
        result.error = process.spawn_error.clone();
        result.session_id = session_id;
        result.agent = agent.map(Box::new);
        result.input_sha256 = input_key;
        crash_point("after_side_effect");
        if process.stopped || result.timed_out == Some(ActionTimeout::Run) {
            self.record(Event::ActionInterrupted {
                state: pending.state.clone(),
                step: pending.step,
                idempotency_key: pending.idempotency_key.clone(),
                reason: if process.stopped {
                    self.stop_reason().as_str().to_owned()
                } else {
                    "timed_out".to_owned()
                },
                bytes: Some(result.bytes),
            });
            if process.stopped {
                self.record(Event::RunPaused {
                    reason: self.stop_reason(),
                    message: None,
                });
            } else {
                self.record(Event::RunTimedOut {
                    elapsed_ms: self.state.elapsed_ms_at(self.options.clock.now()),
                });
            }
            return Ok(());
        }
        if let Some(hook) = &self.options.step_hook {
            result.checkpoint = hook
                .after_action(&pending.state, pending.step)
                .map(Box::new);
        }
        self.record_finished(&pending, result);
        if let Some(setup) = &agent_setup {
            self.after_prompt(&pending, &setup.profile);
        }
        Ok(())
    }

    /// Records how `pending`'s action ended, with what its state captures.
    fn record_finished(&mut self, pending: &PendingAction, result: ActionResult) {
        let capture = self.def.states[&pending.state].capture.clone();
        self.record(Event::ActionFinished {
            state: pending.state.clone(),
            step: pending.step,
            capture,
            result,
        });
    }

    /// Judges the current state: its action's result, or its evaluator's `source:`.
    fn evaluate(&self) -> Event {
        let current = self.state.current.clone().unwrap_or_default();
        let step = self.state.step;
        let state_def = &self.def.states[&current];
        if let Phase::Finished { result } = &self.state.phase
            && let Some(event) = prompt::agent_verdict(state_def, &current, step, result)
        {
            return event;
        }
        let evaluator = state_def.evaluator();
        let lookup = Lookup {
            state: &self.state,
            run_dir: &self.run_dir,
            capture_limit: self.options.capture_limit,
            outputs: Some(&self.run),
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
            // A prompt's answer is its agent's final text, not the CLI's JSON stream.
            (None, Some(result))
                if result
                    .agent
                    .as_ref()
                    .is_some_and(|a| a.final_text.is_some()) =>
            {
                result
                    .agent
                    .as_ref()
                    .and_then(|a| a.final_text.clone())
                    .unwrap_or_default()
            }
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
            // `judge` handles every `llm` evaluator; this is kept total instead of panicking.
            return errored("internal: the llm evaluator was not judged".into());
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

/// The run's scratch folder (`${run.dir}`, `$DLOOP_RUN_DIR`): `work/` in its run folder.
pub fn work_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("work")
}
