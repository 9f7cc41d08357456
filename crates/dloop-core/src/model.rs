//! The loop model: the serde types a loop file is read into, and from which `dloop schema`
//! generates the JSON Schema (the same types, so the schema cannot drift from the parser).
//!
//! These types hold what the file says; defaults that depend on other fields (the evaluator of
//! a state without `evaluate`, the input key) are resolved by the accessor methods, so the
//! model stays a faithful copy of the source for `show --format json`.

use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::HumanDuration;

/// The default `limits.max_steps` when a loop sets none.
pub const DEFAULT_MAX_STEPS: u64 = 100;
/// The context key the positional INPUT of `dloop run` sets when a loop names no `input_key`.
pub const DEFAULT_INPUT_KEY: &str = "input";
/// The route key that catches every verdict without a route of its own (except `error`).
pub const DEFAULT_ROUTE: &str = "_";

/// A whole loop file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "dloop loop file")]
pub struct LoopDef {
    /// The loop's name; defaults to the file name without `.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One line saying what the loop does (shown by `dloop list`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The state the run starts in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<String>,
    /// Default context values; `--context K=V` and the positional input override them.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub context: IndexMap<String, ContextValue>,
    /// The context key the positional INPUT of `dloop run` sets (default `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_key: Option<String>,
    /// Context keys that must be non-empty when the run starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<String>,
    /// Paths this loop may change; runs with overlapping scopes do not run at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// Two runs of this loop never run at once, whatever their scopes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub singleton: bool,
    /// Limits for the whole run.
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    /// A pause between steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<HumanDuration>,
    /// What a detected agent handoff does: pause the run (default) or continue in a new session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_handoff: Option<OnHandoff>,
    /// The default runner profile of `prompt` states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// The states, in the order the file lists them.
    #[serde(default)]
    pub states: IndexMap<String, StateDef>,
}

/// A context value. Loop files may write numbers and booleans; the context holds their text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct ContextValue(#[schemars(schema_with = "scalar_schema")] pub String);

fn scalar_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "number", "boolean"] })
}

impl<'de> Deserialize<'de> for ContextValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ContextValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ContextValue, E> {
                Ok(ContextValue(v.to_owned()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ContextValue, E> {
                Ok(ContextValue(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ContextValue, E> {
                Ok(ContextValue(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ContextValue, E> {
                Ok(ContextValue(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ContextValue, E> {
                Ok(ContextValue(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<ContextValue, E> {
                Ok(ContextValue(String::new()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Run-wide limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// State executions before the run pauses (resumable); default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<PositiveInt>,
    /// Wall clock for the whole run, summed across resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// A transition A->B taken more often than this fails the run (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_edge_visits: Option<PositiveInt>,
    /// Spend budget: US dollars of agent and judge calls (see `budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_cost_usd: Option<f64>,
    /// Spend budget: input + output tokens of agent and judge calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<PositiveInt>,
    /// Spend budget: time spent in agent and judge calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_agent_time: Option<HumanDuration>,
}

/// A state's spend budget (`limits:` of a state): counts only that state's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateLimits {
    /// US dollars of this state's agent and judge calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_cost_usd: Option<f64>,
    /// Input + output tokens of this state's agent and judge calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<PositiveInt>,
    /// Time spent in this state's agent and judge calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_agent_time: Option<HumanDuration>,
}

impl StateLimits {
    /// The state's budget.
    pub fn budget(&self) -> crate::budget::Budget {
        crate::budget::Budget {
            max_cost_usd: self.max_cost_usd,
            max_tokens: self.max_tokens.map(|n| n.0),
            max_agent_time_ms: self.max_agent_time.map(|d| d.as_millis()),
        }
    }
}

impl Limits {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// `max_steps`, or [`DEFAULT_MAX_STEPS`].
    pub fn max_steps(&self) -> u64 {
        self.max_steps.map_or(DEFAULT_MAX_STEPS, |n| n.0)
    }

    /// The run's spend budget as the loop sets it.
    pub fn budget(&self) -> crate::budget::Budget {
        crate::budget::Budget {
            max_cost_usd: self.max_cost_usd,
            max_tokens: self.max_tokens.map(|n| n.0),
            max_agent_time_ms: self.max_agent_time.map(|d| d.as_millis()),
        }
    }
}

/// A whole number greater than zero; zero and negative numbers are refused with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct PositiveInt(#[schemars(range(min = 1))] pub u64);

impl<'de> Deserialize<'de> for PositiveInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PositiveInt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number greater than zero")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PositiveInt, E> {
                if v == 0 {
                    Err(E::custom("must be greater than zero, got 0"))
                } else {
                    Ok(PositiveInt(v))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PositiveInt, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("must be greater than zero, got {v}"))),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<PositiveInt, E> {
                Err(E::custom(format!(
                    "must be a whole number greater than zero, got {v}"
                )))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PositiveInt, E> {
                Err(E::custom(format!(
                    "must be a whole number greater than zero, got \"{v}\""
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// What a detected `CONTEXT_HANDOFF:` line does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnHandoff {
    /// Pause the run as awaiting continuation.
    Pause,
    /// Continue in a fresh agent session.
    Continue,
}

/// What resume does with an action that started and never finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnInterrupted {
    /// Run it again, with the same idempotency key.
    #[default]
    Rerun,
    /// Keep the run paused until the user says `--rerun` or `--skip-to STATE`.
    Stop,
}

/// The outcome a terminal state gives the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Terminal {
    /// The run completes (exit 0).
    Success,
    /// The run fails (exit 1).
    Failure,
}

/// The backoff ladder for an agent that reports a rate or usage limit: short retries first,
/// then long waits up to the reset time the CLI reported, within a total cap. Every wait is
/// recorded in the log (`rate_limited`), so a run killed during one resumes the ladder where it
/// was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicy {
    /// The waits before each retry, in order; the last one repeats (default: 30s, 2m, 10m, 30m).
    #[serde(default = "RateLimitPolicy::default_waits")]
    pub waits: Vec<HumanDuration>,
    /// The longest single wait, also when the CLI reports a later reset time (default: 6h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait: Option<HumanDuration>,
    /// The most time spent waiting for one action in all (default: 24h). Past it the state
    /// routes `rate_limited` if it has that route, else the run pauses (reason `rate_limited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<HumanDuration>,
}

impl RateLimitPolicy {
    fn default_waits() -> Vec<HumanDuration> {
        ["30s", "2m", "10m", "30m"]
            .iter()
            .map(|t| t.parse().expect("valid default duration"))
            .collect()
    }

    /// `max_wait`, or its default of 6 hours.
    pub fn max_wait_ms(&self) -> u64 {
        self.max_wait
            .map_or(6 * 3_600_000, HumanDuration::as_millis)
    }

    /// `total`, or its default of 24 hours.
    pub fn total_ms(&self) -> u64 {
        self.total.map_or(24 * 3_600_000, HumanDuration::as_millis)
    }
}

impl Default for RateLimitPolicy {
    fn default() -> Self {
        Self {
            waits: Self::default_waits(),
            max_wait: None,
            total: None,
        }
    }
}

/// One state of the loop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateDef {
    /// A note for readers; shown by `dloop show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A shell command, run with `bash -c`; interpolated values reach it as variables, never as
    /// code, unless `:raw` (see `interpolate::shell`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// A prompt sent to an agent runner; interpolated values are inserted verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A sub-loop to run to its end; its outcome is this state's result.
    #[serde(default, rename = "loop", skip_serializing_if = "Option::is_none")]
    pub sub_loop: Option<String>,
    /// Context given to the sub-loop (values are interpolated).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub with: IndexMap<String, ContextValue>,
    /// The runner profile of a `prompt` state (default: the loop's, then config's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// The model of a `prompt` state, over its profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Extra arguments for a `prompt` state's agent CLI, after its profile's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Most agent turns a `prompt` state's invocation may take (dloop enforces it: the CLIs'
    /// own caps overrun).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u64>,
    /// The rate-limit backoff ladder of a `prompt` state, over its profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitPolicy>,
    /// How the result becomes a verdict (default: `exit_code` for shell, `llm` for prompt).
    /// A map with `type:`, or only the type's name when it needs no fields.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_evaluate"
    )]
    #[schemars(with = "Option<EvaluateSchema>")]
    pub evaluate: Option<Evaluate>,
    /// Routes: verdict -> next state; `_` catches every other verdict except `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<IndexMap<String, String>>,
    /// The next state whatever the verdict (except `error`); same as `on: { _: STATE }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Keep this action's result as `${captured.NAME.*}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<String>,
    /// Wall clock per action; the whole process group is killed at the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Longest silence (no output) before the action is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<HumanDuration>,
    /// Retry the action when its verdict is one of `retries.on` (default: `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// What resume does with this state's action if it started and never finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_interrupted: Option<OnInterrupted>,
    /// Makes this state the end of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<Terminal>,
    /// This state's spend budget (`max_cost_usd`, `max_tokens`, `max_agent_time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<StateLimits>,
}

/// The action of a state, borrowed from its definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionRef<'a> {
    /// `shell:`
    Shell(&'a str),
    /// `prompt:`
    Prompt(&'a str),
    /// `loop:`
    SubLoop(&'a str),
}

impl StateDef {
    /// The state's action, if it has exactly one (validation rejects more than one; the first
    /// of shell, prompt, loop wins here).
    pub fn action(&self) -> Option<ActionRef<'_>> {
        if let Some(cmd) = &self.shell {
            Some(ActionRef::Shell(cmd))
        } else if let Some(prompt) = &self.prompt {
            Some(ActionRef::Prompt(prompt))
        } else {
            self.sub_loop.as_deref().map(ActionRef::SubLoop)
        }
    }

    /// The evaluator in force: the one written, else `exit_code` for shell and sub-loop
    /// actions, `llm` for prompts, and for a state with no action a constant `success`.
    pub fn evaluator(&self) -> Evaluate {
        if let Some(evaluate) = &self.evaluate {
            return evaluate.clone();
        }
        match self.action() {
            Some(ActionRef::Prompt(_)) => Evaluate::Llm(LlmEval::default()),
            Some(ActionRef::Shell(_)) | Some(ActionRef::SubLoop(_)) => {
                Evaluate::ExitCode(ExitCodeEval::default())
            }
            None => Evaluate::Always,
        }
    }

    /// The target state for `verdict`: its own route, then `_`/`next` (never for `error`).
    pub fn route(&self, verdict: &str) -> Option<&str> {
        if let Some(on) = &self.on {
            if let Some(target) = on.get(verdict) {
                return Some(target);
            }
            if verdict != "error"
                && let Some(target) = on.get(DEFAULT_ROUTE)
            {
                return Some(target);
            }
        }
        if verdict != "error" {
            return self.next.as_deref();
        }
        None
    }

    /// Every state this one can move to, with the verdict (or `_`/`next`) that leads there.
    pub fn edges(&self) -> Vec<(String, &str)> {
        let mut edges: Vec<(String, &str)> = Vec::new();
        if let Some(on) = &self.on {
            edges.extend(
                on.iter()
                    .map(|(verdict, target)| (verdict.clone(), target.as_str())),
            );
        }
        if let Some(next) = &self.next {
            edges.push(("next".to_owned(), next.as_str()));
        }
        if let Some(retries) = &self.retries
            && let Some(target) = &retries.on_exhausted
        {
            edges.push(("retries exhausted".to_owned(), target.as_str()));
        }
        edges
    }
}

/// Retry policy of a state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Retries after the first attempt.
    pub max: u32,
    /// The verdicts that trigger a retry (default: `[error]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<String>>,
    /// Pause before each retry (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<HumanDuration>,
    /// Where to go when retries are used up (default: the verdict's own route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exhausted: Option<String>,
}

impl Retries {
    /// Whether `verdict` triggers a retry.
    pub fn applies_to(&self, verdict: &str) -> bool {
        match &self.on {
            Some(list) => list.iter().any(|v| v == verdict),
            None => verdict == "error",
        }
    }
}

/// How a state's result becomes a verdict. Written as a map with `type:`, or as just the
/// type's name when it needs no fields (`evaluate: exit_code`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Evaluate {
    /// success (0 or a listed code), failure (1..=125), error (timeout, signal, 126, 127).
    ExitCode(ExitCodeEval),
    /// success when the regex matches (failure otherwise; `negate` swaps them).
    Contains(ContainsEval),
    /// Compares a number read from the output.
    Numeric(NumericEval),
    /// Compares a value at a path in JSON output.
    Json(JsonEval),
    /// Tracks a metric across visits: target, progress or stall.
    Convergence(ConvergenceEval),
    /// Asks a runner to judge the output (success, failure, partial, blocked, error).
    Llm(LlmEval),
    /// The verdict is the text of one line of the output.
    Classify(ClassifyEval),
    /// Always `success`: the evaluator of a state with no action and no `evaluate`.
    #[serde(skip)]
    Always,
}

/// Fields of `exit_code`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExitCodeEval {
    /// Exit codes that count as success (default `[0]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_codes: Option<Vec<i32>>,
}

/// Fields of `contains`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainsEval {
    /// A regular expression (Rust `regex` syntax).
    pub pattern: String,
    /// success when the pattern does *not* match.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub negate: bool,
    /// Read this interpolated text instead of the action's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// less than
    Lt,
    /// less or equal
    Le,
    /// greater than
    Gt,
    /// greater or equal
    Ge,
}

/// Fields of `numeric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NumericEval {
    /// How the number compares to `target` for success.
    pub operator: Operator,
    /// The number to compare with.
    pub target: f64,
    /// Read the number from a `KEY=NUMBER` line (default: the last number in the text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Read this interpolated text instead of the action's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Fields of `json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonEval {
    /// A dotted path into the document (`summary.failed`, `items.0.ok`).
    pub path: String,
    /// How the value compares to `target` (default `eq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    /// The value to compare with (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<serde_json::Value>,
    /// Read this interpolated text instead of the action's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Which way a convergence metric should move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Lower is better (failing tests, lint warnings).
    #[default]
    Down,
    /// Higher is better (coverage).
    Up,
}

/// Fields of `convergence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvergenceEval {
    /// Read the metric from a `METRIC=NUMBER` line (default: the last number in the text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The value that ends the loop with verdict `target`.
    pub target: f64,
    /// Which way is better (default `down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The smallest change that counts as progress (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// Visits without progress before the verdict is `stall` (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_after: Option<PositiveInt>,
    /// Read this interpolated text instead of the action's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Fields of `llm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmEval {
    /// What the judge is asked (default: did the action do what its prompt asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The judge's runner profile (default: the state's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// Verdicts with lower confidence count as failure (0..=1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f64>,
    /// Read this interpolated text instead of the action's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Which line `classify` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[schemars(with = "LineSelectorSchema")]
pub enum LineSelector {
    /// The last non-empty line (default).
    #[default]
    Last,
    /// The first non-empty line.
    First,
    /// The Nth non-empty line, from 1.
    Nth(u64),
}

#[derive(JsonSchema)]
#[allow(dead_code)]
#[serde(untagged)]
enum LineSelectorSchema {
    Named(LineName),
    Nth(#[schemars(range(min = 1))] u64),
}

#[derive(JsonSchema)]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
enum LineName {
    Last,
    First,
}

impl Serialize for LineSelector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Last => serializer.serialize_str("last"),
            Self::First => serializer.serialize_str("first"),
            Self::Nth(n) => serializer.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for LineSelector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = LineSelector;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`last`, `first` or a line number from 1")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LineSelector, E> {
                match v {
                    "last" => Ok(LineSelector::Last),
                    "first" => Ok(LineSelector::First),
                    other => other
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .map(LineSelector::Nth)
                        .ok_or_else(|| {
                            E::custom(format!(
                                "line must be `last`, `first` or a number from 1, got `{other}`"
                            ))
                        }),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<LineSelector, E> {
                if v == 0 {
                    Err(E::custom("line numbers start at 1"))
                } else {
                    Ok(LineSelector::Nth(v))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<LineSelector, E> {
                Err(E::custom(format!("line numbers start at 1, got {v}")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Fields of `classify`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyEval {
    /// Which non-empty line is the verdict (default `last`).
    #[serde(default)]
    pub line: LineSelector,
    /// Read this interpolated text instead of the action's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Evaluate {
    /// The evaluator's name as written in `type:`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ExitCode(_) => "exit_code",
            Self::Contains(_) => "contains",
            Self::Numeric(_) => "numeric",
            Self::Json(_) => "json",
            Self::Convergence(_) => "convergence",
            Self::Llm(_) => "llm",
            Self::Classify(_) => "classify",
            Self::Always => "always",
        }
    }

    /// The verdicts this evaluator can produce, or `None` when any text can be a verdict
    /// (`classify`).
    pub fn verdicts(&self) -> Option<&'static [&'static str]> {
        match self {
            Self::ExitCode(_) => Some(&["success", "failure", "error"]),
            Self::Contains(_) => Some(&["success", "failure", "error"]),
            Self::Numeric(_) | Self::Json(_) => Some(&["success", "failure", "error"]),
            Self::Convergence(_) => Some(&["target", "progress", "stall", "error"]),
            Self::Llm(_) => Some(&["success", "failure", "partial", "blocked", "error"]),
            Self::Classify(_) => None,
            Self::Always => Some(&["success"]),
        }
    }

    /// The `source:` text, if the evaluator reads one instead of the action's output.
    pub fn source(&self) -> Option<&str> {
        match self {
            Self::Contains(e) => e.source.as_deref(),
            Self::Numeric(e) => e.source.as_deref(),
            Self::Json(e) => e.source.as_deref(),
            Self::Convergence(e) => e.source.as_deref(),
            Self::Llm(e) => e.source.as_deref(),
            Self::Classify(e) => e.source.as_deref(),
            Self::ExitCode(_) | Self::Always => None,
        }
    }
}

/// `context` as plain strings, in file order.
pub fn context_strings(context: &IndexMap<String, ContextValue>) -> BTreeMap<String, String> {
    context
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

impl LoopDef {
    /// `input_key`, or [`DEFAULT_INPUT_KEY`].
    pub fn input_key(&self) -> &str {
        self.input_key.as_deref().unwrap_or(DEFAULT_INPUT_KEY)
    }

    /// `on_handoff`, or pause.
    pub fn on_handoff(&self) -> OnHandoff {
        self.on_handoff.unwrap_or(OnHandoff::Pause)
    }
}

#[derive(JsonSchema)]
#[allow(dead_code)]
#[serde(untagged)]
enum EvaluateSchema {
    Name(EvaluatorName),
    Full(Evaluate),
}

#[derive(JsonSchema)]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
enum EvaluatorName {
    ExitCode,
    Llm,
    Classify,
}

/// Reads `evaluate:` either as a map with `type:` or as a bare evaluator name.
fn deserialize_evaluate<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Evaluate>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<Evaluate>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an evaluator name or a map with `type:`")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let evaluate = match v {
                "exit_code" => Evaluate::ExitCode(ExitCodeEval::default()),
                "llm" => Evaluate::Llm(LlmEval::default()),
                "classify" => Evaluate::Classify(ClassifyEval::default()),
                "contains" | "numeric" | "json" | "convergence" => {
                    return Err(E::custom(format!(
                        "evaluator `{v}` needs fields: write it as a map, `evaluate: {{ type: {v}, ... }}`"
                    )));
                }
                other => {
                    return Err(E::unknown_variant(
                        other,
                        &[
                            "exit_code",
                            "contains",
                            "numeric",
                            "json",
                            "convergence",
                            "llm",
                            "classify",
                        ],
                    ));
                }
            };
            Ok(Some(evaluate))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Evaluate::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Visitor)
}
