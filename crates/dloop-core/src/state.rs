//! [`RunState`]: everything a run knows, rebuilt by folding its records in order.
//!
//! Invariants the fold keeps (and the property tests check):
//! - folding a prefix, round-tripping the state through JSON, then folding the rest gives the
//!   same state as folding everything at once (so `state.json` snapshots are exact);
//! - the fold never needs the loop definition: every record carries what it means (the capture
//!   name, a convergence state's memory), so a log can be read without its loop file;
//! - [`Phase`] says exactly where in a step the log ends, for any prefix of a valid log, so a
//!   run cut at any record boundary continues from the right place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::evaluate::ConvergenceMemory;
use crate::event::{ActionKind, ActionResult, Event, PauseReason, Record};
use crate::timestamp::Timestamp;

/// The statuses of DESIGN.md section 4 that the log itself can say. `crashed` is not among
/// them: it is `Running` in the log with no live process holding the run lock, which only a
/// reader that can test the lock knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A session is (or was, if its process died) driving the run.
    #[default]
    Running,
    /// Stopped and resumable; see [`RunState::pause_reason`].
    Paused,
    /// Reached a `terminal: success` state.
    Completed,
    /// Reached a `terminal: failure` state or an error.
    Failed,
    /// Ended for good by `dloop cancel`.
    Cancelled,
    /// The run's `limits.timeout` ran out; resumable with a larger `--timeout`.
    TimedOut,
}

impl RunStatus {
    /// The status as `status --json` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }

    /// Whether `dloop resume` can continue a run in this status.
    pub fn is_resumable(self) -> bool {
        matches!(self, Self::Running | Self::Paused | Self::TimedOut)
    }

    /// Whether the run has ended for good.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The status a reader reports, given whether a live process holds the run: the log's,
    /// except that a run the log calls running with no holder has `crashed` (resumable).
    pub fn observed(self, live: bool) -> &'static str {
        match self {
            Self::Running if !live => "crashed",
            status => status.as_str(),
        }
    }

    /// Whether `dloop resume` can continue the run now: resumable and not held by anyone.
    pub fn is_resumable_now(self, live: bool) -> bool {
        !live && self.is_resumable()
    }
}

/// An action that was started and has not finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAction {
    /// The state it belongs to.
    pub state: String,
    /// The step number.
    pub step: u64,
    /// Its kind.
    pub kind: ActionKind,
    /// The idempotency key, the same on every re-run.
    pub idempotency_key: String,
    /// Where its output goes, relative to the run folder.
    pub output_path: String,
    /// Where its output starts in the output stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_offset: Option<u64>,
    /// Prompt actions: the runner profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Prompt actions: the blob holding the prompt as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Prompt actions: the agent session this attempt continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues_session: Option<String>,
    /// Prompt actions: the agent session this attempt runs in, once `agent_session` said (an
    /// interrupted attempt is continued in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// Where in a step the log ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// No `run_started` yet.
    #[default]
    NotStarted,
    /// Moved to [`RunState::current`] (start, transition, retry or `--skip-to`); not entered yet.
    Entering,
    /// Entered; the action has not started (or was interrupted, see [`RunState::interrupted`]).
    Entered,
    /// The action started and has not finished.
    Acting(PendingAction),
    /// The action finished; no verdict yet.
    Finished {
        /// Its result.
        result: ActionResult,
    },
    /// Judged; not routed yet.
    Evaluated {
        /// The verdict.
        verdict: String,
        /// What the evaluator saw.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The run has ended (completed, failed, cancelled).
    Ended,
}

/// The result of an action as interpolation sees it (`captured.NAME.*`, `prev.*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// The state that ran it.
    pub state: String,
    /// Its step number.
    pub step: u64,
    /// The verdict, once evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// What the action did.
    #[serde(flatten)]
    pub result: ActionResult,
}

/// A run waiting in the scope queue (`dloop run --queue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeWait {
    /// The run's scope (paths relative to the project root).
    pub scope: Vec<String>,
    /// The run it first waited for.
    pub holder: String,
    /// When it started waiting.
    pub since: Timestamp,
}

/// Counters per state, for `inspect`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateStats {
    /// Times entered.
    pub visits: u64,
    /// Verdicts `failure` or `error`.
    pub failures: u64,
    /// Time spent in its actions.
    pub time_ms: u64,
    /// Its latest action's output, so `inspect` shows every state's, captured or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_output: Option<LastOutput>,
    /// Its agent figures (prompt states).
    #[serde(default, skip_serializing_if = "AgentTotals::is_empty")]
    pub agent: AgentTotals,
}

/// Agent figures summed over invocations: time, turns, tokens and cost, and the latest model
/// and session id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentTotals {
    /// Agent invocations that finished.
    #[serde(default)]
    pub invocations: u64,
    /// Time spent in them.
    #[serde(default)]
    pub time_ms: u64,
    /// Turns, where the CLIs say.
    #[serde(default)]
    pub turns: u64,
    /// Tokens (summed deltas).
    #[serde(default)]
    pub tokens: crate::event::TokenUsage,
    /// Cost in US dollars, where the CLIs say.
    #[serde(default)]
    pub cost_usd: f64,
    /// The latest model seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The latest agent session id seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

impl AgentTotals {
    /// Whether no agent invocation was counted.
    pub fn is_empty(&self) -> bool {
        self.invocations == 0
    }

    /// Adds one finished invocation.
    pub fn add(
        &mut self,
        report: &crate::event::AgentReport,
        duration_ms: u64,
        session: Option<&str>,
    ) {
        self.invocations += 1;
        self.time_ms += duration_ms;
        self.turns += report.turns.unwrap_or(0);
        self.tokens.input += report.tokens.input;
        self.tokens.output += report.tokens.output;
        self.tokens.cached += report.tokens.cached;
        self.tokens.cache_write += report.tokens.cache_write;
        self.cost_usd += report.cost_usd.unwrap_or(0.0);
        if report.model.is_some() {
            self.model.clone_from(&report.model);
        }
        if let Some(session) = session {
            self.session_id = Some(session.to_owned());
        }
    }
}

/// Where a state's latest action output is, with its excerpt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastOutput {
    /// The step that printed it.
    pub step: u64,
    /// The excerpt the log keeps (whole when `complete`).
    pub excerpt: String,
    /// Whether the excerpt is all of it.
    pub complete: bool,
    /// Its size.
    pub bytes: u64,
    /// stderr's tail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// Where all of it is, relative to the run folder (empty when nothing was printed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_path: String,
    /// Where it starts in the output stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_offset: Option<u64>,
}

/// A child run of a `loop:` state (`sub_loop_started`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRun {
    /// The `loop:` state.
    pub state: String,
    /// The step that runs it (a re-run of an interrupted step continues the same child).
    pub step: u64,
    /// The child's run id.
    pub run_id: String,
}

/// The run a sub-loop run belongs to (`sub_loop_of`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRun {
    /// The parent run.
    pub run_id: String,
    /// Its `loop:` state.
    pub state: String,
    /// Its step.
    pub step: u64,
    /// Nesting depth: 1 for a child of a top-level run.
    pub depth: u32,
}

/// Everything a run knows. Rebuilt by [`RunState::apply`] from the log; saved as `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The run id.
    pub run_id: String,
    /// The loop's name.
    pub loop_name: String,
    /// SHA-256 of the definition in force (changes with `resume --reload`).
    pub definition_sha256: String,
    /// The status the log says.
    pub status: RunStatus,
    /// Why the run is paused, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReason>,
    /// The pause message or the failure, while paused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last error seen (a failed run's cause, or the last `error` verdict's detail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The state the run is in (or moving to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Where in the step the log ends.
    pub phase: Phase,
    /// An action interrupted by a stop or a crash, to be re-run (or decided on) at resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<PendingAction>,
    /// `resume --rerun` was given for an `on_interrupted: stop` state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rerun_allowed: bool,
    /// State executions so far (the number of the last `state_entered`).
    pub step: u64,
    /// Steps before the run pauses.
    pub max_steps: u64,
    /// Wall clock for the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Pause between steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// The context: defaults, then `--context`, then the input, then resume overrides.
    pub context: BTreeMap<String, String>,
    /// Captured results by capture name.
    pub captures: BTreeMap<String, StepResult>,
    /// Agent figures of the whole run (each state's are in [`RunState::states`]).
    #[serde(default, skip_serializing_if = "AgentTotals::is_empty")]
    pub agent: AgentTotals,
    /// The previous action's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<StepResult>,
    /// Counters per state.
    pub states: BTreeMap<String, StateStats>,
    /// Transitions taken, keyed `from->to`.
    pub edges: BTreeMap<String, u64>,
    /// Retries used in the current stay in a state (reset when the run moves on).
    pub retries: BTreeMap<String, u32>,
    /// Rate-limit waits for the current action (its step's ladder position).
    pub rate_limit_waits: u32,
    /// The sum of those waits (the ladder's `total` caps it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_limit_waited_ms: u64,
    /// While the current action waits out a rate limit: when it may start again. Set by
    /// `rate_limited`, cleared by the next `action_started` (and by a new step); `status` shows
    /// it as "waiting (rate limit, resumes HH:MM)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_until: Option<Timestamp>,
    /// A handoff note waiting for the next prompt (`handoff_detected`), put in front of every
    /// attempt of the next prompt action until one finishes (`action_finished`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<String>,
    /// Memory of each `convergence` state.
    pub convergence: BTreeMap<String, ConvergenceMemory>,
    /// When the run started.
    pub started_at: Timestamp,
    /// Time of the last record.
    pub last_ts: Timestamp,
    /// When the last action finished (the `delay` between steps counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action_ended: Option<Timestamp>,
    /// Run time of the sessions that have ended.
    pub closed_sessions_ms: u64,
    /// Start of the current session, while one is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_started: Option<Timestamp>,
    /// Sessions so far (1 + resumes).
    pub sessions: u32,
    /// The scope wait in progress: set by `scope_waiting`, cleared when the scope is taken or
    /// the session ends. A live run with one is `waiting (scope ...)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_wait: Option<ScopeWait>,
    /// `run --no-llm`: prompt states without an explicit evaluator skip the judge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub judge_off: bool,
    /// Run budget limits given on the command line, over the loop's.
    #[serde(default, skip_serializing_if = "crate::budget::Budget::is_empty")]
    pub budget: crate::budget::Budget,
    /// Whether the current step spent (an agent or judge call counted figures): only such a
    /// step is checked against the budgets.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub step_spent: bool,
    /// Child runs of this run's `loop:` states, in the order they were started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildRun>,
    /// The run this one is a sub-loop of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRun>,
    /// The seq of the last record applied.
    pub last_seq: u64,
}

impl RunState {
    /// The run's elapsed time as of its last record: every session's time, summed.
    pub fn elapsed_ms(&self) -> u64 {
        self.elapsed_ms_at(self.last_ts)
    }

    /// The elapsed time if the current session is still going at `now`.
    pub fn elapsed_ms_at(&self, now: Timestamp) -> u64 {
        let open = self
            .session_started
            .map_or(0, |start| now.as_millis().saturating_sub(start.as_millis()));
        self.closed_sessions_ms + open
    }

    /// Visits of `state` so far.
    pub fn visits(&self, state: &str) -> u64 {
        self.states.get(state).map_or(0, |s| s.visits)
    }

    /// The child run of step `step`'s `loop:` state, once `sub_loop_started` named it.
    pub fn child_of_step(&self, step: u64) -> Option<&ChildRun> {
        self.children.iter().rev().find(|c| c.step == step)
    }

    /// Nesting depth: 0 for a top-level run, 1 for its children, and so on.
    pub fn depth(&self) -> u32 {
        self.parent.as_ref().map_or(0, |p| p.depth)
    }

    /// Times the transition `from -> to` was taken.
    pub fn edge_count(&self, from: &str, to: &str) -> u64 {
        self.edges.get(&edge_key(from, to)).copied().unwrap_or(0)
    }

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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The key of a transition in [`RunState::edges`].
pub fn edge_key(from: &str, to: &str) -> String {
    format!("{from}->{to}")
}
