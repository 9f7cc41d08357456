//! The loop model: the serde types a loop file is read into, and from which `dloop schema`
//! generates the JSON Schema (the same types, so the schema cannot drift from the parser).
//!
//! These types hold what the file says; defaults that depend on other fields (the evaluator of
//! a state without `evaluate`, the input key) are resolved by the accessor methods, so the
//! model stays a faithful copy of the source for `show --format json`.
//!
//! The loop-level types are here; a state's definition is in state_def.rs, the evaluators in
//! evaluator.rs, and the limits and rate-limit policy in limits.rs (all re-exported here).

mod evaluator;
mod limits;
mod state_def;

use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::HumanDuration;

pub use self::evaluator::{
    ClassifyEval, ContainsEval, ConvergenceEval, Direction, Evaluate, ExitCodeEval, JsonEval,
    LineSelector, LlmEval, NumericEval, Operator,
};
pub use self::limits::{Limits, RateLimitPolicy, StateLimits};
pub use self::state_def::{ActionRef, Retries, StateDef};

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
