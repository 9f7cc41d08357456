//! The evaluators a state can declare (`evaluate:`), one struct per type, and how they are read:
//! a map with `type:`, or a bare name for the evaluators that need no fields.
//!
//! Invariant: [`Evaluate::verdicts`] lists every verdict the pure evaluators in
//! [`crate::evaluate`] can give; `evaluate`'s tests check it.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::PositiveInt;

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

#[derive(JsonSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub(super) enum EvaluateSchema {
    Name(EvaluatorName),
    Full(Evaluate),
}

#[derive(JsonSchema)]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
pub(super) enum EvaluatorName {
    ExitCode,
    Llm,
    Classify,
}

/// Reads `evaluate:` either as a map with `type:` or as a bare evaluator name.
pub(super) fn deserialize_evaluate<'de, D: Deserializer<'de>>(
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
