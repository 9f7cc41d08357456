//! What the log records about an action: its kind, its result (exit, output place, timeout,
//! checkpoint) and, for agent actions, the agent's report (outcome, tokens, cost).
//!
//! Invariant: like every record field, these are only ever added to (as `Option` or with a
//! default), never renamed or removed, so logs written by older versions keep loading.

use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

/// Which limit ended an action early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionTimeout {
    /// The state's `timeout` (wall clock).
    Wall,
    /// The state's `idle_timeout` (no output).
    Idle,
    /// What was left of the run's `limits.timeout`.
    Run,
}

/// The kind of action a state runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// `shell:`
    Shell,
    /// `prompt:`
    Prompt,
    /// `loop:`
    SubLoop,
}

/// The run's output stream, relative to the run folder: every byte every action printed, in the
/// order it arrived, appended as it arrives. Records point into it by offset and length.
pub const OUTPUT_STREAM: &str = "output.log";

/// The result of an action as the log keeps it. Every byte is in the run's output stream
/// ([`OUTPUT_STREAM`]) at `output_offset`, `bytes` long. Outputs up to the excerpt limit are also
/// kept whole in the log (`complete: true`), so the stream need not be synced for them; larger
/// ones are synced in the stream before this record and the log keeps the head and tail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionResult {
    /// Exit status, when the process exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended the process, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Set when a time limit ended the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<ActionTimeout>,
    /// Wall time of the action.
    pub duration_ms: u64,
    /// Size of stdout+stderr, interleaved as they arrived.
    pub bytes: u64,
    /// SHA-256 (hex) of stdout+stderr.
    pub sha256: String,
    /// stdout+stderr, whole when `complete`, else head and tail with a marker between.
    pub excerpt: String,
    /// Whether `excerpt` is the whole output.
    pub complete: bool,
    /// stderr alone, bounded like `excerpt`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// Where the full output is, relative to the run folder ([`OUTPUT_STREAM`]); empty when the
    /// action printed nothing. Logs written before the stream existed name a file per step
    /// (`outputs/<seq>-<state>.out`, only for outputs that did not fit the excerpt).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_path: String,
    /// Where the output starts in the stream; `None` in logs from before the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_offset: Option<u64>,
    /// An error that kept the action from running at all (spawn failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The agent's session id (prompt actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// What an agent runner made of its CLI's stream (prompt actions only; boxed: most results
    /// are shell actions').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Box<AgentReport>>,
    /// What the action changed in the working tree, when the run is in a git repository
    /// (boxed: absent outside one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Box<Checkpoint>>,
    /// The replay key: SHA-256 (hex) of what the action was asked to do (its state, kind,
    /// rendered command or prompt, and the agent call), so `dloop replay` can tell whether a
    /// step may reuse this result. `None` in logs from before replay and for an action that
    /// could not be rendered (it ran nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<String>,
}

/// A step checkpoint: the git trees of the run's working tree before and after one action,
/// written through a temporary index (the user's index, HEAD and stash are never touched).
/// `git diff BASE TREE` is what the step changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The tree after the action (hex object id).
    pub tree: String,
    /// The tree before it: the previous step's `tree` in the same session, or the working tree
    /// as the session found it.
    pub base: String,
    /// What taking the checkpoint cost, in microseconds.
    pub cost_us: u64,
}

/// How an agent invocation ended, classified from its CLI's terminal event first, then its exit
/// status, then its stderr (AGENT_CLIS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentOutcome {
    /// The agent finished its turn normally.
    #[default]
    Success,
    /// The agent reported an error that is none of the kinds below (or exited non-zero).
    Failure,
    /// The service refused for a rate or usage limit; retry after a wait.
    RateLimited,
    /// The conversation outgrew the model's context (retrying the same way loops).
    ContextLimit,
    /// Not logged in, a bad key, no credits, or billing: a person must act.
    AuthFailed,
    /// The service could not be reached (offline, DNS, TLS, 5xx after the CLI's own retries).
    Unreachable,
    /// The agent was interrupted (by the user or a signal) before it finished.
    Interrupted,
    /// The stream ended without the CLI's terminal event: it crashed or hung.
    NoTerminalEvent,
}

impl AgentOutcome {
    /// The outcome as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::RateLimited => "rate_limited",
            Self::ContextLimit => "context_limit",
            Self::AuthFailed => "auth_failed",
            Self::Unreachable => "unreachable",
            Self::Interrupted => "interrupted",
            Self::NoTerminalEvent => "no_terminal_event",
        }
    }
}

/// Token counts of one agent invocation. Always this step's own use: a CLI that reports running
/// totals (codex per thread, claude until a `conversation_reset`) is turned into per-step deltas
/// by its runner, so sums over steps are right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Input tokens not served from a cache.
    #[serde(default)]
    pub input: u64,
    /// Output tokens (reasoning included where the CLI counts it there).
    #[serde(default)]
    pub output: u64,
    /// Input tokens read from a cache.
    #[serde(default)]
    pub cached: u64,
    /// Input tokens written to a cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What an agent runner read from its CLI's stream: the outcome, the final text, and the figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    /// The runner profile that ran it.
    pub profile: String,
    /// How the invocation ended.
    pub outcome: AgentOutcome,
    /// The agent's final answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_text: Option<String>,
    /// The model that answered, when the CLI says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Turns (model round trips) of this invocation, when the CLI says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<u64>,
    /// Token use of this invocation (a delta, never a running total).
    #[serde(default)]
    pub tokens: TokenUsage,
    /// Cost in US dollars, when the CLI reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The agent's own error message (failure, limit, authentication), for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When a rate limit resets, if the CLI said (for the backoff ladder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<Timestamp>,
    /// Whether the action continued an earlier session (`--resume`) rather than starting fresh.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continued: bool,
}
