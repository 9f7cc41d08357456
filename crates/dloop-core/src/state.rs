//! [`RunState`]: everything a run knows, rebuilt by folding its records in order.
//!
//! Invariants the fold keeps (and the property tests check):
//! - folding a prefix, round-tripping the state through JSON, then folding the rest gives the
//!   same state as folding everything at once (so `state.json` snapshots are exact);
//! - the fold never needs the loop definition: every record carries what it means (the capture
//!   name, a convergence state's memory), so a log can be read without its loop file;
//! - [`Phase`] says exactly where in a step the log ends, for any prefix of a valid log, so a
//!   run cut at any record boundary continues from the right place.
//!
//! The types and read-only queries are here; the fold itself is in fold.rs.

mod fold;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::evaluate::ConvergenceMemory;
use crate::event::{ActionKind, ActionResult, PauseReason};
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
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The key of a transition in [`RunState::edges`].
pub fn edge_key(from: &str, to: &str) -> String {
    format!("{from}->{to}")
}
