//! `loop:` states in a session: the parent's side of a sub-loop step. The child id is noted
//! (appended and synced) before the child exists, the child is created or continued and driven
//! ([`crate::subloop`]), and its end becomes this step's records:
//! - completed: `action_finished` with exit code 0; failed, cancelled or timed out: exit code 1
//!   (the default `exit_code` evaluator routes `success` / `failure`); the output is the
//!   child's outcome JSON either way;
//! - paused by a stop (SIGTERM, Ctrl-C): `action_interrupted` + `run_paused` with the stop's
//!   reason, as for any action a stop ends;
//! - paused on its own (max_steps, budget, rate limit, ...): `action_interrupted` + `run_paused`
//!   with the child's reason and a message naming the child; resuming the parent resumes it;
//! - a child that cannot start (no such loop, a `with:` value that does not render, too deep):
//!   `action_finished` with the reason as its `error` (an `error` verdict).

use std::time::{Duration, Instant};

use dloop_core::event::{Event, PauseReason};
use dloop_core::interpolate::Quoting;
use dloop_core::state::{PendingAction, RunStatus};
use dloop_store::{RunHandle, StoreErrorKind, crash_point};

use super::{Session, prompt};
use crate::actions::output::{StepOutput, Stream};
use crate::error::RuntimeError;
use crate::interp::Lookup;
use crate::subloop::{
    self, ChildEnd, ChildObserver, ChildStart, Inherited, MAX_DEPTH, SubLoopHost,
};

impl<R: RunHandle> Session<'_, R> {
    /// Runs the `loop:` action of `pending` (loop `name`) and records how it ended.
    ///
    /// # Errors
    /// Failures of dloop's own I/O: this run's log or output, the child's store.
    pub(super) fn run_sub_loop(
        &mut self,
        pending: PendingAction,
        name: &str,
    ) -> Result<(), RuntimeError> {
        let began = Instant::now();
        self.stream()?;
        debug_assert!(self.batch.is_empty(), "the intent's batch is durable");
        self.observer.on_action_start(&pending, &self.state);
        let Some(host) = self.options.sub_loops.clone() else {
            let message = "sub-loops cannot run in this session".to_owned();
            return self.finish_step(&pending, began, Err(message));
        };
        if self.serve_recorded(&*host, &pending)? {
            return Ok(());
        }
        let end = match self.child_end(&*host, &pending, name)? {
            Ok(end) => end,
            Err(message) => return self.finish_step(&pending, began, Err(message)),
        };
        match end.status {
            RunStatus::Completed
            | RunStatus::Failed
            | RunStatus::Cancelled
            | RunStatus::TimedOut => {
                let json = subloop::outcome_json(&*host, &end, self.options.capture_limit);
                self.finish_step(&pending, began, Ok((end, json)))
            }
            RunStatus::Paused | RunStatus::Running => {
                let stopped = self.options.stop.level() >= crate::process::StopLevel::Drain;
                let (reason, message) = if stopped {
                    (self.stop_reason(), None)
                } else {
                    let child_reason = end.state.pause_reason.unwrap_or(PauseReason::Stopped);
                    let detail = end
                        .state
                        .message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    (
                        child_reason,
                        Some(format!(
                            "sub-loop run {} (state `{}`) paused ({}){detail}; `dloop resume {}` \
                             continues it, then this run",
                            end.run_id,
                            pending.state,
                            child_reason.as_str(),
                            self.state.run_id
                        )),
                    )
                };
                crash_point("after_side_effect");
                self.record(Event::ActionInterrupted {
                    state: pending.state.clone(),
                    step: pending.step,
                    idempotency_key: pending.idempotency_key.clone(),
                    reason: if stopped {
                        reason.as_str().to_owned()
                    } else {
                        "sub_loop_paused".to_owned()
                    },
                    bytes: Some(0),
                });
                self.record(Event::RunPaused { reason, message });
                Ok(())
            }
        }
    }

    /// The child of `pending`'s step, created or continued and driven to its end or a pause;
    /// `Ok(Err(reason))` when it cannot run (the step's `error`).
    fn child_end(
        &mut self,
        host: &dyn SubLoopHost,
        pending: &PendingAction,
        name: &str,
    ) -> Result<Result<ChildEnd, String>, RuntimeError> {
        let depth = self.state.depth() + 1;
        if depth > MAX_DEPTH {
            return Ok(Err(format!(
                "sub-loop `{name}` would run at depth {depth}: sub-loops nest at most \
                 {MAX_DEPTH} deep"
            )));
        }
        let link = Event::SubLoopOf {
            run_id: self.state.run_id.clone(),
            state: pending.state.clone(),
            step: pending.step,
            depth,
        };
        let mut options = self.options.clone();
        options.worktree = None;
        options.step_hook = None;
        let inherited = self.inherited();
        let known = self
            .state
            .child_of_step(pending.step)
            .filter(|c| c.state == pending.state)
            .map(|c| c.run_id.clone());
        if let Some(id) = known {
            let exists = match host.store().read_meta(&id) {
                Ok(_) => true,
                Err(err) if err.kind() == StoreErrorKind::NotFound => false,
                Err(err) => return Err(err.into()),
            };
            if exists {
                let mut observer = ChildObserver {
                    parent: &mut *self.observer,
                    depth: 1,
                };
                let end =
                    subloop::continue_child(host, &id, link, inherited, options, &mut observer)?;
                return Ok(Ok(end));
            }
            // The process died between noting the id and creating the child: create it now,
            // under the id the log already names.
            let start = match self.child_start(host, pending, name) {
                Ok(start) => start,
                Err(message) => return Ok(Err(message)),
            };
            let mut observer = ChildObserver {
                parent: &mut *self.observer,
                depth: 1,
            };
            let end = subloop::create_child(host, &id, &start, link, options, &mut observer)?;
            return Ok(Ok(end));
        }
        let start = match self.child_start(host, pending, name) {
            Ok(start) => start,
            Err(message) => return Ok(Err(message)),
        };
        let id = subloop::fresh_id(host.store(), &start.child.name, self.options.clock.now())?;
        let note = Event::SubLoopStarted {
            state: pending.state.clone(),
            step: pending.step,
            child_run_id: id.clone(),
        };
        let written = prompt::append_now(
            &mut self.run,
            &mut self.state,
            &*self.options.clock,
            &mut *self.observer,
            note,
        )?;
        self.since_snapshot += written;
        crash_point("after_sub_loop_note");
        let mut observer = ChildObserver {
            parent: &mut *self.observer,
            depth: 1,
        };
        let end = subloop::create_child(host, &id, &start, link, options, &mut observer)?;
        Ok(Ok(end))
    }

    /// The child run `pending`'s state would start: loop `name` as the host has it, its
    /// context (its defaults, then the state's `with:` values rendered verbatim), its runner
    /// profiles checked. `Err` says why it cannot start.
    fn child_start(
        &self,
        host: &dyn SubLoopHost,
        pending: &PendingAction,
        name: &str,
    ) -> Result<ChildStart, String> {
        let child = host.load_for(&self.state.run_id, name)?;
        // Its runs are named after it: a name no run id can carry fails the step, not the run.
        dloop_core::run_id::RunId::new(&child.name, self.options.clock.now(), 0)
            .map_err(|err| format!("sub-loop `{name}` cannot name a run: {err}"))?;
        let lookup = Lookup {
            state: &self.state,
            run_dir: &self.run_dir,
            capture_limit: self.options.capture_limit,
            outputs: Some(&self.run),
        };
        let mut context = dloop_core::model::context_strings(&child.def.context);
        for (key, value) in &self.def.states[&pending.state].with {
            let rendered = lookup
                .render(&value.0, Quoting::Verbatim)
                .map_err(|err| format!("with.{key}: {err}"))?;
            context.insert(key.clone(), rendered);
        }
        let missing: Vec<String> = child
            .def
            .required
            .iter()
            .filter(|key| context.get(key.as_str()).is_none_or(String::is_empty))
            .map(|key| format!("`{key}`"))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "sub-loop `{name}` needs context {}; bind it with `with:`",
                missing.join(", ")
            ));
        }
        crate::agent_runners::check_runners(&child.def, &*self.options.agents)
            .map_err(|err| format!("sub-loop `{name}`: {err}"))?;
        Ok(ChildStart {
            child,
            context,
            inherited: self.inherited(),
        })
    }

    /// What a child of this run inherits: its `--no-llm` and what is left of its budget (the
    /// loop's limits under the run's overrides, less what the run spent).
    fn inherited(&self) -> Inherited {
        let budget = self.def.limits.budget().overridden_by(&self.state.budget);
        Inherited {
            no_llm: self.state.judge_off,
            budget: subloop::budget_left(&budget, &self.state.agent),
        }
    }

    /// The call a `loop:` step makes: its loop and its `with:` values, rendered, as one JSON
    /// text (`None` when one does not render). Its hash is the step's replay key.
    fn call_text(&self, pending: &PendingAction) -> Option<String> {
        let state_def = &self.def.states[&pending.state];
        let lookup = Lookup {
            state: &self.state,
            run_dir: &self.run_dir,
            capture_limit: self.options.capture_limit,
            outputs: Some(&self.run),
        };
        let mut with = std::collections::BTreeMap::new();
        for (key, value) in &state_def.with {
            with.insert(
                key.as_str(),
                lookup.render(&value.0, Quoting::Verbatim).ok()?,
            );
        }
        let call = serde_json::json!({ "loop": state_def.sub_loop, "with": with });
        Some(call.to_string())
    }

    /// What the replay key leaves out of a call: the run's id and folder (see
    /// [`crate::replay::input_sha256`]).
    fn call_env(&self) -> [(String, String); 2] {
        let work_dir = super::work_dir(&self.run_dir);
        [
            ("DLOOP_RUN_ID".to_owned(), self.state.run_id.clone()),
            ("DLOOP_RUN_DIR".to_owned(), work_dir.display().to_string()),
        ]
    }

    /// The step's replay key ([`crate::replay::input_sha256`]) (`None` when a `with:` value
    /// does not render).
    fn replay_key(&self, pending: &PendingAction) -> Option<String> {
        let text = self.call_text(pending)?;
        let env = self.call_env();
        let request = crate::actions::ActionRequest {
            pending,
            text: text.as_bytes(),
            env: &env,
            cwd: &self.options.project_root,
            scratch: &self.run_dir,
            limits: crate::process::Limits::default(),
            agent: None,
        };
        Some(crate::replay::input_sha256(&request))
    }

    /// Asks `host` for a recorded result of this step (a replay) and, when it has one,
    /// records it as the step's end exactly as a run records an action's: its output through
    /// the stream, its exit code and agent spend, its replay key; a result the replay stopped
    /// (a divergence without `--live`) as an interrupted step and a pause. Returns whether the
    /// step was answered (no child is created or run then).
    fn serve_recorded(
        &mut self,
        host: &dyn SubLoopHost,
        pending: &PendingAction,
    ) -> Result<bool, RuntimeError> {
        let Some(text) = self.call_text(pending) else {
            return Ok(false);
        };
        let env = self.call_env();
        let stream_path = self.run_dir.join(dloop_core::event::OUTPUT_STREAM);
        let io_error = |source| RuntimeError::Output {
            path: stream_path.clone(),
            source,
        };
        let cwd = self.options.project_root.clone();
        let scratch = self.run_dir.clone();
        let request = crate::actions::ActionRequest {
            pending,
            text: text.as_bytes(),
            env: &env,
            cwd: &cwd,
            scratch: &scratch,
            limits: crate::process::Limits::default(),
            agent: None,
        };
        let key = crate::replay::input_sha256(&request);
        self.stream()?;
        let Self {
            stream,
            observer,
            options,
            ..
        } = self;
        let mut output = StepOutput::new(stream.as_deref_mut().expect("opened above"));
        let mut watch = |s, bytes: &[u8]| observer.on_output(s, bytes);
        let mut io = crate::actions::ActionIo {
            output: &mut output,
            watch: &mut watch,
            stop: &options.stop,
            note: &mut |_| {},
            activity: &mut |_| {},
        };
        let Some(outcome) = host.replayed(&request, &mut io) else {
            return Ok(false);
        };
        let outcome = outcome.map_err(io_error)?;
        let process = outcome.process;
        let mut result = output.finish(process.duration).map_err(io_error)?;
        result.exit_code = process.exit_code();
        result.signal = process.signal();
        result.timed_out = process.timed_out;
        result.error = process.spawn_error.clone();
        result.agent = outcome.agent.map(Box::new);
        result.input_sha256 = Some(key);
        if process.stopped {
            self.record(Event::ActionInterrupted {
                state: pending.state.clone(),
                step: pending.step,
                idempotency_key: pending.idempotency_key.clone(),
                reason: self.stop_reason().as_str().to_owned(),
                bytes: Some(result.bytes),
            });
            self.record(Event::RunPaused {
                reason: self.stop_reason(),
                message: None,
            });
            return Ok(true);
        }
        self.record_finished(pending, result);
        Ok(true)
    }

    /// Records the step's `action_finished`: the child's outcome JSON as its output (and,
    /// for a child that did not complete, a line on stderr saying so), exit code 0 for a
    /// completed child and 1 otherwise, the child's agent spend; or, for `Err`, no output and
    /// the reason as the result's `error`.
    fn finish_step(
        &mut self,
        pending: &PendingAction,
        began: Instant,
        outcome: Result<(ChildEnd, String), String>,
    ) -> Result<(), RuntimeError> {
        let stream_path = self.run_dir.join(dloop_core::event::OUTPUT_STREAM);
        let io_error = |source| RuntimeError::Output {
            path: stream_path.clone(),
            source,
        };
        let stream = self.stream()?;
        let mut output = StepOutput::new(stream);
        let (exit_code, error, agent) = match &outcome {
            Ok((end, json)) => {
                output
                    .write(Stream::Stdout, format!("{json}\n").as_bytes())
                    .map_err(io_error)?;
                if end.status != RunStatus::Completed {
                    let line = format!(
                        "sub-loop run {} {}{}\n",
                        end.run_id,
                        end.status.as_str(),
                        end.state
                            .message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    );
                    output
                        .write(Stream::Stderr, line.as_bytes())
                        .map_err(io_error)?;
                }
                let code = i32::from(end.status != RunStatus::Completed);
                (Some(code), None, subloop::spend(end))
            }
            Err(message) => (None, Some(message.clone()), None),
        };
        let duration = if error.is_some() {
            Duration::ZERO
        } else {
            began.elapsed()
        };
        let mut result = output.finish(duration).map_err(io_error)?;
        result.exit_code = exit_code;
        result.error = error;
        result.agent = agent.map(Box::new);
        result.input_sha256 = self.replay_key(pending);
        crash_point("after_side_effect");
        if outcome.is_ok()
            && let Some(hook) = &self.options.step_hook
        {
            result.checkpoint = hook
                .after_action(&pending.state, pending.step)
                .map(Box::new);
        }
        self.record_finished(pending, result);
        Ok(())
    }
}
