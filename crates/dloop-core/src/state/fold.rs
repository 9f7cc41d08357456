//! The fold: [`RunState::apply`] moves a state forward by one record, one `match` arm per
//! record type, and [`RunState::from_records`] folds a whole log.
//!
//! Invariants (checked by the property tests): records are applied in `seq` order; the result
//! depends only on the records, never on the loop definition or the clock; folding a prefix,
//! round-tripping through JSON and folding the rest equals folding everything at once.

use super::{
    ChildRun, LastOutput, ParentRun, PendingAction, Phase, RunState, RunStatus, ScopeWait,
    StepResult, edge_key,
};
use crate::event::{ActionKind, Event, PauseReason, Record};

impl RunState {
    fn close_session(&mut self) {
        if let Some(start) = self.session_started.take() {
            self.closed_sessions_ms += self.last_ts.as_millis().saturating_sub(start.as_millis());
        }
    }

    fn move_to(&mut self, state: &str) {
        self.current = Some(state.to_owned());
        self.phase = Phase::Entering;
        self.interrupted = None;
    }

    /// Puts the step whose action just finished back to "entered": its action runs again
    /// (same step, same idempotency key) because the agent did no work (a rate limit, an
    /// unavailable agent). Only the step in force is affected, so the record is harmless
    /// history otherwise.
    fn redo_action(&mut self, step: u64) {
        let in_step = step == 0 || step == self.step;
        if in_step && matches!(self.phase, Phase::Finished { .. } | Phase::Entered) {
            self.phase = Phase::Entered;
            self.interrupted = None;
        }
    }

    /// Applies one record. Records must come in `seq` order; the store guarantees it.
    pub fn apply(&mut self, record: &Record) {
        debug_assert!(
            self.last_seq == 0 || record.seq == self.last_seq + 1,
            "records applied out of order: {} after {}",
            record.seq,
            self.last_seq
        );
        self.last_seq = record.seq;
        // A resume after a crash opens a new session while the old one is still open: the
        // old one ends at its last record, before this record moves `last_ts`.
        if let Event::RunResumed { .. } = record.event {
            self.close_session();
        }
        self.last_ts = self.last_ts.max(record.ts);
        match &record.event {
            Event::RunStarted {
                run_id,
                loop_name,
                definition_sha256,
                initial,
                context,
                max_steps,
                timeout_ms,
                delay_ms,
            } => {
                self.run_id.clone_from(run_id);
                self.loop_name.clone_from(loop_name);
                self.definition_sha256.clone_from(definition_sha256);
                self.context.clone_from(context);
                self.max_steps = *max_steps;
                self.timeout_ms = *timeout_ms;
                self.delay_ms = *delay_ms;
                self.started_at = record.ts;
                self.session_started = Some(record.ts);
                self.sessions = 1;
                self.status = RunStatus::Running;
                self.move_to(initial);
            }
            Event::StateEntered { state, step, visit } => {
                self.current = Some(state.clone());
                self.step = *step;
                self.states.entry(state.clone()).or_default().visits = *visit;
                self.rate_limit_waits = 0;
                self.rate_limit_waited_ms = 0;
                self.rate_limit_until = None;
                self.step_spent = false;
                self.phase = Phase::Entered;
            }
            Event::ActionStarted {
                state,
                step,
                kind,
                idempotency_key,
                output_path,
                output_offset,
                profile,
                prompt,
                continues_session,
            } => {
                self.interrupted = None;
                self.rerun_allowed = false;
                self.rate_limit_until = None;
                self.phase = Phase::Acting(PendingAction {
                    state: state.clone(),
                    step: *step,
                    kind: *kind,
                    idempotency_key: idempotency_key.clone(),
                    output_path: output_path.clone(),
                    output_offset: *output_offset,
                    profile: profile.clone(),
                    prompt: prompt.clone(),
                    continues_session: continues_session.clone(),
                    // A continued session is the one this attempt runs in until the CLI says
                    // otherwise.
                    session_id: continues_session.clone(),
                });
            }
            Event::ActionFinished {
                state,
                step,
                capture,
                result,
            } => {
                let step_result = StepResult {
                    state: state.clone(),
                    step: *step,
                    verdict: None,
                    result: result.clone(),
                };
                if let Some(name) = capture {
                    self.captures.insert(name.clone(), step_result.clone());
                }
                self.prev = Some(step_result);
                self.last_action_ended = Some(record.ts);
                // A handoff note stays until a prompt action has finished with it in front of
                // its prompt: an attempt interrupted or re-run is sent it again.
                if let Phase::Acting(pending) = &self.phase
                    && pending.kind == ActionKind::Prompt
                {
                    self.handoff = None;
                }
                let stats = self.states.entry(state.clone()).or_default();
                stats.time_ms += result.duration_ms;
                if let Some(report) = &result.agent {
                    self.step_spent = true;
                    let session = result.session_id.as_deref();
                    stats.agent.add(report, result.duration_ms, session);
                    self.agent.add(report, result.duration_ms, session);
                }
                stats.last_output = Some(LastOutput {
                    step: *step,
                    excerpt: result.excerpt.clone(),
                    complete: result.complete,
                    bytes: result.bytes,
                    stderr: result.stderr.clone(),
                    output_path: result.output_path.clone(),
                    output_offset: result.output_offset,
                });
                self.phase = Phase::Finished {
                    result: result.clone(),
                };
            }
            Event::ActionInterrupted { step, .. } => {
                // Only the action in flight can be interrupted; after a `--skip-to` in the same
                // batch the record is history and changes nothing.
                if let Phase::Acting(pending) = &self.phase
                    && pending.step == *step
                {
                    self.interrupted = Some(pending.clone());
                    self.phase = Phase::Entered;
                }
            }
            Event::Evaluated {
                state,
                step,
                verdict,
                detail,
                convergence,
                ..
            } => {
                for result in self.captures.values_mut().chain(self.prev.as_mut()) {
                    if result.step == *step && result.state == *state {
                        result.verdict = Some(verdict.clone());
                    }
                }
                if let Some(memory) = convergence {
                    self.convergence.insert(state.clone(), memory.clone());
                }
                if verdict == "failure" || verdict == "error" {
                    self.states.entry(state.clone()).or_default().failures += 1;
                }
                if verdict == "error" {
                    self.last_error = Some(match detail {
                        Some(detail) => format!("{state}: {detail}"),
                        None => format!("{state}: error"),
                    });
                }
                self.phase = Phase::Evaluated {
                    verdict: verdict.clone(),
                    detail: detail.clone(),
                };
            }
            Event::Transitioned { from, to, .. } => {
                *self.edges.entry(edge_key(from, to)).or_default() += 1;
                self.retries.remove(from);
                self.move_to(to);
            }
            Event::RetryScheduled { state, retry, .. } => {
                self.retries.insert(state.clone(), *retry);
                self.move_to(state);
            }
            Event::RateLimited {
                step,
                attempt,
                wait_ms,
                resume_at,
                exhausted,
                ..
            } => {
                self.rate_limit_waits = *attempt;
                if !*exhausted {
                    self.rate_limit_waited_ms += *wait_ms;
                    self.rate_limit_until = *resume_at;
                }
                self.redo_action(*step);
            }
            Event::AgentUnavailable { step, .. } => self.redo_action(*step),
            Event::AgentSession {
                step, session_id, ..
            } => {
                if let Phase::Acting(pending) = &mut self.phase
                    && pending.step == *step
                {
                    pending.session_id = Some(session_id.clone());
                }
            }
            Event::HandoffDetected { state, message, .. } => {
                self.handoff = Some(message.clone());
                self.move_to(state);
            }
            Event::ScopeWaiting { scope, holder } => {
                // Time in the queue is not run time: `limits.timeout` counts working time.
                self.close_session();
                self.scope_wait = Some(ScopeWait {
                    scope: scope.clone(),
                    holder: holder.clone(),
                    since: record.ts,
                });
            }
            Event::ScopeAcquired { .. } => {
                if self.scope_wait.take().is_some() {
                    self.session_started = Some(record.ts);
                }
            }
            Event::RunPaused { reason, message } => {
                self.scope_wait = None;
                self.status = RunStatus::Paused;
                self.pause_reason = Some(*reason);
                self.message.clone_from(message);
                self.close_session();
            }
            Event::RunResumed {
                overrides,
                rerun,
                skip_to,
            } => {
                // A run paused because the ladder was spent gets a fresh ladder: resuming says
                // "try again now". A run that died or was stopped mid-ladder keeps its place.
                if self.pause_reason == Some(PauseReason::RateLimited) {
                    self.rate_limit_waits = 0;
                    self.rate_limit_waited_ms = 0;
                    self.rate_limit_until = None;
                }
                self.status = RunStatus::Running;
                self.pause_reason = None;
                self.message = None;
                self.scope_wait = None;
                self.sessions += 1;
                self.session_started = Some(record.ts);
                if let Some(max_steps) = overrides.max_steps {
                    self.max_steps = max_steps;
                }
                if overrides.timeout_ms.is_some() {
                    self.timeout_ms = overrides.timeout_ms;
                }
                for (key, value) in &overrides.context {
                    self.context.insert(key.clone(), value.clone());
                }
                self.budget = self.budget.overridden_by(&overrides.budget);
                self.rerun_allowed = *rerun;
                if let Some(target) = skip_to {
                    self.move_to(target);
                }
            }
            Event::RunCompleted { state } => {
                self.current = Some(state.clone());
                self.finish(RunStatus::Completed, None);
            }
            Event::RunFailed { state, error } => {
                if state.is_some() {
                    self.current.clone_from(state);
                }
                self.last_error = Some(error.clone());
                self.finish(RunStatus::Failed, Some(error.clone()));
            }
            Event::RunTimedOut { .. } => {
                self.status = RunStatus::TimedOut;
                self.message = Some("the run's timeout ran out".to_owned());
                self.close_session();
            }
            Event::RunCancelled {} => self.finish(RunStatus::Cancelled, None),
            Event::DefinitionReloaded { definition_sha256 } => {
                self.definition_sha256.clone_from(definition_sha256);
            }
            Event::RunRewound { step, state, .. } => self.rewind_to(*step, state),
            Event::SubLoopStarted {
                state,
                step,
                child_run_id,
            } => self.children.push(ChildRun {
                state: state.clone(),
                step: *step,
                run_id: child_run_id.clone(),
            }),
            Event::SubLoopOf {
                run_id,
                state,
                step,
                depth,
            } => {
                self.parent = Some(ParentRun {
                    run_id: run_id.clone(),
                    state: state.clone(),
                    step: *step,
                    depth: *depth,
                });
            }
            // A fork or a replay of a sub-loop run is a run of its own: no parent continues it.
            Event::ForkedFrom { .. } | Event::ReplayedFrom { .. } => self.parent = None,
            Event::LogRepaired { .. } => {}
            Event::RunOptions { no_llm, budget } => {
                self.judge_off = *no_llm;
                self.budget = *budget;
            }
            Event::Judged {
                state,
                agent,
                duration_ms,
                ..
            } => {
                // The judge is an agent call like any: its figures count toward the budgets.
                if let Some(report) = agent {
                    self.step_spent = true;
                    let stats = self.states.entry(state.clone()).or_default();
                    stats.agent.add(report, *duration_ms, None);
                    self.agent.add(report, *duration_ms, None);
                }
            }
        }
    }

    /// `run_rewound`: everything the run knew at the end of `step`, except what belongs to
    /// the run's whole life (seq, start, sessions, time), then paused.
    fn rewind_to(&mut self, step: u64, earlier: &RunState) {
        self.close_session();
        let kept = std::mem::replace(self, earlier.clone());
        self.run_id = kept.run_id;
        self.last_seq = kept.last_seq;
        self.last_ts = kept.last_ts;
        self.started_at = kept.started_at;
        self.sessions = kept.sessions;
        self.closed_sessions_ms = kept.closed_sessions_ms;
        // Where the run sits among runs is its whole life's. Children of the steps after `step`
        // are forgotten: those step numbers will be taken again, and must not find them.
        self.parent = kept.parent;
        self.children = kept
            .children
            .into_iter()
            .filter(|c| c.step <= step)
            .collect();
        self.session_started = None;
        self.scope_wait = None;
        self.interrupted = None;
        self.status = RunStatus::Paused;
        self.pause_reason = Some(PauseReason::Rewound);
        self.message = Some(format!("rewound to the end of step {step}"));
    }

    fn finish(&mut self, status: RunStatus, message: Option<String>) {
        self.status = status;
        self.pause_reason = None;
        self.message = message;
        self.phase = Phase::Ended;
        self.scope_wait = None;
        self.close_session();
    }

    /// Folds records into a fresh state.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut state = Self::default();
        for record in records {
            state.apply(record);
        }
        state
    }
}
