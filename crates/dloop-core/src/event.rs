//! The events of a run: one variant per record type of `events.jsonl` (DESIGN.md section 5).
//!
//! A record on disk is `{"seq":N,"ts":"...","type":"<variant in snake_case>",<fields>,"crc":"..."}`;
//! [`Record`] is everything but the `crc`, which the store adds and checks. Fields are only ever
//! added (as `Option` or with a default) so that logs written by older versions keep loading;
//! readers ignore fields they do not know.
//!
//! The record types of an action's result and agent report are in action.rs (re-exported here).

mod action;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use self::action::{
    ActionKind, ActionResult, ActionTimeout, AgentOutcome, AgentReport, Checkpoint, OUTPUT_STREAM,
    TokenUsage,
};
use crate::evaluate::ConvergenceMemory;
use crate::timestamp::Timestamp;

/// One record of the log, without its checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When the record was made (UTC).
    pub ts: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// Why a run is paused. Every paused run is resumable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// `dloop stop` (SIGTERM) or `--drain`.
    Stopped,
    /// Ctrl-C in the foreground.
    Interrupted,
    /// `limits.max_steps` reached.
    MaxSteps,
    /// The agent handed off (`CONTEXT_HANDOFF:`); awaiting continuation.
    Handoff,
    /// An action was interrupted in a state with `on_interrupted: stop`: resume needs
    /// `--rerun` or `--skip-to STATE`.
    NeedsDecision,
    /// The agent stayed rate limited past the backoff ladder.
    RateLimited,
    /// The agent could not work at all (not logged in, no credits, the service unreachable):
    /// a person must act; resume runs the step's action again.
    AgentError,
    /// `--queue-timeout` ran out while the run waited for its scope; resume waits again.
    QueueTimeout,
    /// A spend budget (`max_cost_usd`, `max_tokens`, `max_agent_time`) is exceeded and the
    /// state routes no `budget_exceeded`; resume with a larger budget.
    Budget,
    /// `dloop rewind` put the run (and its working tree) back to the end of an earlier step.
    Rewound,
}

impl PauseReason {
    /// The reason as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Interrupted => "interrupted",
            Self::MaxSteps => "max_steps",
            Self::Handoff => "handoff",
            Self::NeedsDecision => "needs_decision",
            Self::RateLimited => "rate_limited",
            Self::AgentError => "agent_error",
            Self::QueueTimeout => "queue_timeout",
            Self::Budget => "budget",
            Self::Rewound => "rewound",
        }
    }
}

/// Overrides given to `dloop resume`, recorded so the fold knows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeOverrides {
    /// New `max_steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// New run timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Context values set or replaced.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, String>,
    /// Run budget limits set or raised (`--max-cost-usd`, `--max-tokens`, `--max-agent-time`).
    #[serde(default, skip_serializing_if = "crate::budget::Budget::is_empty")]
    pub budget: crate::budget::Budget,
}

/// Something that happened in a run. The variant name in snake_case is the record's `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The first record of every run.
    RunStarted {
        /// The run id.
        run_id: String,
        /// The loop's name.
        loop_name: String,
        /// SHA-256 (hex) of the loop file the run started with.
        definition_sha256: String,
        /// The state the run starts in.
        initial: String,
        /// The resolved context (defaults, then `--context`, then the input).
        context: BTreeMap<String, String>,
        /// State executions before the run pauses.
        max_steps: u64,
        /// Wall clock for the whole run, across resumes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
        /// Pause between steps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay_ms: Option<u64>,
    },
    /// The run entered a state; `step` counts state executions from 1.
    StateEntered {
        /// The state.
        state: String,
        /// The step number this execution has.
        step: u64,
        /// How many times this state has been entered, this one included.
        visit: u64,
    },
    /// The intent record: the action is about to be started.
    ActionStarted {
        /// The state.
        state: String,
        /// The step it belongs to.
        step: u64,
        /// The action's kind.
        kind: ActionKind,
        /// Stable across resumes: a re-run of an interrupted action has the same key.
        idempotency_key: String,
        /// Where its output goes, relative to the run folder ([`OUTPUT_STREAM`]).
        output_path: String,
        /// Where its output will start in the stream, so it can be read while the action runs
        /// and after a crash. Set by the runtime; `None` in logs from before the stream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_offset: Option<u64>,
        /// Prompt actions: the runner profile that runs it. Set by the runtime.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
        /// Prompt actions: the run blob holding the prompt exactly as sent (`prompt-<seq>.txt`,
        /// `<seq>` being this record's), durable before this record. `None` when the prompt
        /// could not be rendered (the action then fails with the reason).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt: Option<String>,
        /// Prompt actions: the agent session this attempt continues (an interrupted attempt's,
        /// where the profile can resume); `None` when it starts a fresh session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        continues_session: Option<String>,
    },
    /// The action ended (by itself, by a timeout, or could not start).
    ActionFinished {
        /// The state.
        state: String,
        /// The step it belongs to.
        step: u64,
        /// The capture name in force (`capture:` of the state).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capture: Option<String>,
        /// What it did.
        #[serde(flatten)]
        result: ActionResult,
    },
    /// An action that started and will not finish: the run was stopped or died during it.
    ActionInterrupted {
        /// The state.
        state: String,
        /// The step it belonged to.
        step: u64,
        /// Its idempotency key.
        idempotency_key: String,
        /// `stopped`, `interrupted` or `crashed`.
        reason: String,
        /// Bytes the action printed before it was ended (its partial output, in the stream from
        /// the `action_started` record's offset); `None` when unknown (the runner died).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
    },
    /// The evaluator's verdict.
    Evaluated {
        /// The state.
        state: String,
        /// The step.
        step: u64,
        /// The verdict.
        verdict: String,
        /// What the evaluator saw (the number read, the line matched, the error).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// The metric a `convergence` evaluator read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metric: Option<f64>,
        /// A `convergence` state's memory after this visit (best value, visits without
        /// progress), so the fold needs no definition to follow it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        convergence: Option<ConvergenceMemory>,
    },
    /// Moved from one state to another.
    Transitioned {
        /// From.
        from: String,
        /// To.
        to: String,
        /// The verdict that chose the route.
        verdict: String,
    },
    /// The state's action will be tried again.
    RetryScheduled {
        /// The state.
        state: String,
        /// The retry number, from 1.
        retry: u32,
        /// The verdict that caused it.
        verdict: String,
        /// Wait before the retry.
        #[serde(default)]
        delay_ms: u64,
    },
    /// The agent was rate limited (after the step's `action_finished`): the same step's action
    /// runs again, with the same idempotency key, once `resume_at` has passed. Folded, it puts
    /// the step back to "entered" and keeps the ladder's counters, so a run killed during the
    /// wait resumes it where it was. `exhausted` means the ladder is spent: no wait, and the run
    /// pauses (`run_paused`, reason `rate_limited`) in the same batch.
    RateLimited {
        /// The state.
        state: String,
        /// The step whose action was limited (0 in logs from before this field).
        #[serde(default)]
        step: u64,
        /// Rate-limit waits for this action so far, this one included.
        attempt: u32,
        /// The wait before the next try.
        wait_ms: u64,
        /// When the next try may start (the record's time plus `wait_ms`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_at: Option<Timestamp>,
        /// When the CLI said its limit resets, if it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resets_at: Option<Timestamp>,
        /// The agent's own message about the limit.
        #[serde(default)]
        evidence: String,
        /// The ladder is spent: no further wait (see above).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        exhausted: bool,
    },
    /// The agent asked to hand off its context (a `CONTEXT_HANDOFF:` line in its final text,
    /// after the step's `action_finished`). Folded, the run moves to the same state again (a
    /// new step, a fresh agent session) and keeps `message` for that prompt; a `run_paused`
    /// (reason `handoff`) follows unless the loop says `on_handoff: continue`.
    HandoffDetected {
        /// The state.
        state: String,
        /// The step whose agent handed off (0 in logs from before this field).
        #[serde(default)]
        step: u64,
        /// The handoff message (the text after `CONTEXT_HANDOFF:`).
        message: String,
    },
    /// A prompt action's agent session began: recorded (in its own batch, synced) as soon as
    /// the runner reads the session id from the CLI's stream, so an action interrupted later
    /// can be continued in that session.
    AgentSession {
        /// The state.
        state: String,
        /// The step.
        step: u64,
        /// The id, as the CLI's resume flag takes it.
        session_id: String,
    },
    /// The agent could not work at all (after the step's `action_finished`): not logged in, no
    /// credits, or the service unreachable. Never a verdict: folded, the step goes back to
    /// "entered" (its action runs again, same idempotency key, when the run continues) and a
    /// `run_paused` (reason `agent_error`) follows in the same batch.
    AgentUnavailable {
        /// The state.
        state: String,
        /// The step.
        step: u64,
        /// How the agent ended (`auth_failed`, `unreachable`).
        outcome: AgentOutcome,
        /// The agent's own message.
        #[serde(default)]
        message: String,
    },
    /// The run stopped and can be resumed.
    RunPaused {
        /// Why.
        reason: PauseReason,
        /// A sentence for the user (which state needs a decision, which limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A resume started a new session of the run.
    RunResumed {
        /// Overrides given with the resume.
        #[serde(default, flatten)]
        overrides: ResumeOverrides,
        /// `--rerun`: re-run an interrupted action in an `on_interrupted: stop` state.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rerun: bool,
        /// `--skip-to STATE`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skip_to: Option<String>,
    },
    /// The run reached a `terminal: success` state.
    RunCompleted {
        /// The terminal state.
        state: String,
    },
    /// The run ended in failure: a `terminal: failure` state or an error.
    RunFailed {
        /// The state it was in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
        /// What went wrong.
        error: String,
    },
    /// The run's wall clock (`limits.timeout`) ran out; resumable with a larger `--timeout`.
    RunTimedOut {
        /// The run's elapsed time.
        elapsed_ms: u64,
    },
    /// `dloop cancel`: ended for good.
    RunCancelled {},
    /// Waiting for another run's overlapping scope.
    ScopeWaiting {
        /// This run's scope.
        scope: Vec<String>,
        /// The run holding an overlapping scope.
        holder: String,
    },
    /// The scope was taken.
    ScopeAcquired {
        /// This run's scope.
        scope: Vec<String>,
    },
    /// `resume --reload` accepted a changed loop file.
    DefinitionReloaded {
        /// SHA-256 (hex) of the new definition.
        definition_sha256: String,
    },
    /// Options of the run given at `dloop run` (recorded right after `run_started` when any is
    /// set), so every session of the run keeps them.
    RunOptions {
        /// `--no-llm`: prompt states without an explicit evaluator are judged by their agent's
        /// outcome (its exit status) instead of the `llm` judge.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        no_llm: bool,
        /// Run budget limits over the loop's (`--max-cost-usd` ...).
        #[serde(default, skip_serializing_if = "crate::budget::Budget::is_empty")]
        budget: crate::budget::Budget,
    },
    /// The `llm` judge answered about the step's result; its `evaluated` follows in the same
    /// batch. The judge's tokens and cost count in the run's and the state's agent figures.
    Judged {
        /// The state judged.
        state: String,
        /// Its step.
        step: u64,
        /// The judge's runner profile.
        profile: String,
        /// The blob holding the judge's prompt as sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt: Option<String>,
        /// The answer, when it parsed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer: Option<crate::judge::JudgeAnswer>,
        /// The raw answer, kept when it did not parse.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        raw_answer: Option<String>,
        /// What the judge's runner read from its CLI (figures, outcome).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<Box<AgentReport>>,
        /// How long the judge took.
        #[serde(default)]
        duration_ms: u64,
        /// The replay key of the judge's call (its prompt as sent and its profile), like
        /// [`ActionResult::input_sha256`]; `None` in logs from before replay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_sha256: Option<String>,
    },
    /// `dloop rewind`: the run is put back to where it was at the end of step `step` (its
    /// working tree restored to that step's checkpoint) and paused there. The record carries
    /// that state whole, so the fold needs nothing but the record.
    RunRewound {
        /// The step the run is back at.
        step: u64,
        /// The checkpoint tree the working tree was restored to.
        tree: String,
        /// The run's state at the end of `step` (seq, timing and sessions are the run's own,
        /// not taken from it).
        state: Box<crate::state::RunState>,
    },
    /// `dloop fork`: this run was made from run `run_id`'s records up to the end of its step
    /// `step` (its seqs 1..=`source_seq`, copied before this record with `run_started.run_id` set to
    /// this run). Only the fork's log holds the link: the source run is left byte-identical.
    ForkedFrom {
        /// The source run.
        run_id: String,
        /// The step of the source the fork continues after.
        step: u64,
        /// The source's last seq copied (not `seq`: that is the record's own).
        source_seq: u64,
    },
    /// A `loop:` state's child run was given its id: appended and synced in its own batch
    /// while the step's action runs, before the child run is created, so a resume of this run
    /// finds the child (or creates it with this id) whatever moment the process died at.
    SubLoopStarted {
        /// The `loop:` state.
        state: String,
        /// Its step.
        step: u64,
        /// The child run's id.
        child_run_id: String,
    },
    /// This run is a sub-loop: recorded right after `run_started` of a child run, naming the
    /// parent run and the step that runs it.
    SubLoopOf {
        /// The parent run.
        run_id: String,
        /// The parent's `loop:` state.
        state: String,
        /// The parent's step.
        step: u64,
        /// Nesting depth: 1 for a child of a top-level run.
        depth: u32,
    },
    /// `dloop replay`: this run re-executes run `run_id`'s recorded steps, reusing their
    /// results (no action process starts) up to the first step that diverges; with `--live` it
    /// goes on for real from there. Only this run's log holds the link: the source run is left
    /// byte-identical.
    ReplayedFrom {
        /// The source run.
        run_id: String,
    },
    /// Opening the log cut off a torn or bad last line.
    LogRepaired {
        /// Bytes removed.
        dropped_bytes: u64,
        /// What was wrong with them.
        reason: String,
    },
}

impl Event {
    /// The record type as written in the log (`action_started`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::RunStarted { .. } => "run_started",
            Self::StateEntered { .. } => "state_entered",
            Self::ActionStarted { .. } => "action_started",
            Self::ActionFinished { .. } => "action_finished",
            Self::ActionInterrupted { .. } => "action_interrupted",
            Self::Evaluated { .. } => "evaluated",
            Self::Transitioned { .. } => "transitioned",
            Self::RetryScheduled { .. } => "retry_scheduled",
            Self::RateLimited { .. } => "rate_limited",
            Self::HandoffDetected { .. } => "handoff_detected",
            Self::AgentSession { .. } => "agent_session",
            Self::AgentUnavailable { .. } => "agent_unavailable",
            Self::RunPaused { .. } => "run_paused",
            Self::RunResumed { .. } => "run_resumed",
            Self::RunCompleted { .. } => "run_completed",
            Self::RunFailed { .. } => "run_failed",
            Self::RunTimedOut { .. } => "run_timed_out",
            Self::RunCancelled {} => "run_cancelled",
            Self::ScopeWaiting { .. } => "scope_waiting",
            Self::ScopeAcquired { .. } => "scope_acquired",
            Self::DefinitionReloaded { .. } => "definition_reloaded",
            Self::RunRewound { .. } => "run_rewound",
            Self::ForkedFrom { .. } => "forked_from",
            Self::SubLoopStarted { .. } => "sub_loop_started",
            Self::SubLoopOf { .. } => "sub_loop_of",
            Self::ReplayedFrom { .. } => "replayed_from",
            Self::LogRepaired { .. } => "log_repaired",
            Self::Judged { .. } => "judged",
            Self::RunOptions { .. } => "run_options",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_name_matches_the_serde_tag() {
        let events = [
            Event::RunCancelled {},
            Event::Transitioned {
                from: "a".into(),
                to: "b".into(),
                verdict: "success".into(),
            },
            Event::RunPaused {
                reason: PauseReason::MaxSteps,
                message: None,
            },
            Event::ActionFinished {
                state: "a".into(),
                step: 1,
                capture: None,
                result: ActionResult::default(),
            },
        ];
        for event in events {
            let json = serde_json::to_value(&event).expect("serializable");
            assert_eq!(json["type"], event.type_name());
        }
    }

    #[test]
    fn record_round_trips_through_json_with_flattened_fields() {
        let record = Record {
            seq: 7,
            ts: Timestamp(1_795_170_430_123),
            event: Event::ActionFinished {
                state: "test".into(),
                step: 3,
                capture: Some("tests".into()),
                result: ActionResult {
                    exit_code: Some(1),
                    duration_ms: 12,
                    bytes: 5,
                    sha256: "ab".into(),
                    excerpt: "fail\n".into(),
                    complete: true,
                    output_path: "outputs/7-test.out".into(),
                    ..ActionResult::default()
                },
            },
        };
        let line = serde_json::to_string(&record).expect("serializable");
        assert!(
            line.starts_with(
                r#"{"seq":7,"ts":"2026-11-20T10:27:10.123Z","type":"action_finished""#
            ),
            "{line}"
        );
        let back: Record = serde_json::from_str(&line).expect("parses");
        assert_eq!(back, record);
    }
}
