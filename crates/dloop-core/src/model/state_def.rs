//! A state of a loop file ([`StateDef`]): its action, evaluator, routes and retries.
//!
//! Invariant: defaults that depend on other fields (the evaluator of a state without
//! `evaluate:`, the `_` route, `error` never caught by `_`) are resolved by the methods here,
//! never written into the fields.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::evaluator::{EvaluateSchema, deserialize_evaluate};
use super::*;

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
