//! Pure verdict logic: how an action's result (or an interpolated `source:`) becomes a verdict,
//! for every evaluator type of DESIGN.md section 3 except the `llm` judge, which needs a runner.
//!
//! Invariants: [`evaluate`] never panics and never does I/O; every evaluator but `llm` gives a
//! verdict for any input; a verdict is one of [`Evaluate::verdicts`] (any trimmed non-empty line
//! for `classify`). Convergence keeps its memory outside ([`ConvergenceMemory`]), updated by the
//! pure [`update_memory`] so the run-state fold can replay it.
//!
//! Rules shared by the text evaluators (all but `exit_code` and `always`): an action that could
//! not start (`error`) or timed out gives `error`, since its output is missing or partial.
//!
//! One file per family: exit_code.rs, matching.rs (`contains`, `classify`), number.rs (reading
//! numbers, `numeric`), json.rs, convergence.rs. This file holds the dispatch and the shared
//! types.

mod convergence;
mod exit_code;
mod json;
mod matching;
mod number;

use serde::{Deserialize, Serialize};

pub use self::convergence::{ConvergenceMemory, DEFAULT_STALL_AFTER, update_memory};
pub use self::number::read_number;
use self::{
    convergence::convergence, exit_code::exit_code, json::json, matching::classify,
    matching::contains, number::numeric,
};
use crate::model::Evaluate;

/// What an evaluator reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EvalInput<'a> {
    /// The action's exit code, when it exited normally.
    pub exit_code: Option<i32>,
    /// The signal that killed the action, if one did.
    pub signal: Option<i32>,
    /// Whether the action was killed for running past its timeout.
    pub timed_out: bool,
    /// Why the action could not be started (spawn failure), if it could not.
    pub error: Option<&'a str>,
    /// The output, or the interpolated `source:`.
    pub text: &'a str,
}

/// The result of evaluating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The verdict, the key routes match on (`success`, `failure`, `error`, `target`, ...).
    pub verdict: String,
    /// A short human explanation ("exit 1", "read 3, wanted lt 1").
    pub detail: Option<String>,
    /// The number read, for `numeric`, `convergence` and numeric `json` values.
    pub metric: Option<f64>,
}

impl Verdict {
    fn new(verdict: &str, detail: impl Into<String>) -> Self {
        Self {
            verdict: verdict.to_owned(),
            detail: Some(detail.into()),
            metric: None,
        }
    }

    fn with_metric(mut self, metric: f64) -> Self {
        self.metric = Some(metric);
        self
    }

    fn pass_fail(ok: bool, detail: impl Into<String>) -> Self {
        Self::new(if ok { "success" } else { "failure" }, detail)
    }
}

/// Evaluates `input` with `eval`.
///
/// Returns `None` only for [`Evaluate::Llm`]: the runtime asks a runner for that verdict.
/// `memory` is the state's [`ConvergenceMemory`] (ignored by other evaluators; `None` means a
/// first visit). Each evaluator's rules are on its function below.
pub fn evaluate(
    eval: &Evaluate,
    input: &EvalInput,
    memory: Option<&ConvergenceMemory>,
) -> Option<Verdict> {
    if let Evaluate::ExitCode(e) = eval {
        return Some(exit_code(e, input));
    }
    if matches!(eval, Evaluate::Always) {
        return Some(Verdict {
            verdict: "success".into(),
            detail: None,
            metric: None,
        });
    }
    if matches!(eval, Evaluate::Llm(_)) {
        return None;
    }
    if let Some(error) = input.error {
        return Some(Verdict::new(
            "error",
            format!("the action could not start: {error}"),
        ));
    }
    if input.timed_out {
        return Some(Verdict::new("error", "timed out"));
    }
    Some(match eval {
        Evaluate::Contains(e) => contains(e, input.text),
        Evaluate::Numeric(e) => numeric(e, input.text),
        Evaluate::Json(e) => json(e, input.text),
        Evaluate::Convergence(e) => convergence(
            e,
            input.text,
            memory.unwrap_or(&ConvergenceMemory::default()),
        ),
        Evaluate::Classify(e) => classify(e, input.text),
        Evaluate::ExitCode(_) | Evaluate::Llm(_) | Evaluate::Always => {
            // Handled above; kept total instead of unreachable!() so no input can panic.
            Verdict::new("error", "internal: evaluator handled above")
        }
    })
}

/// At most `max` characters of `text`, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    let mut short: String = text.chars().take(max).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

// The helpers here are shared by each family's tests (`super::super::tests`); the tests here
// cover every family at once.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        ClassifyEval, ContainsEval, ConvergenceEval, Direction, ExitCodeEval, JsonEval, LlmEval,
        NumericEval, Operator, PositiveInt,
    };

    pub(super) fn text(text: &str) -> EvalInput<'_> {
        EvalInput {
            exit_code: Some(0),
            text,
            ..EvalInput::default()
        }
    }

    /// (verdict, detail) of evaluating; `None` for llm.
    pub(super) fn run(eval: &Evaluate, input: &EvalInput) -> (String, Option<String>) {
        let v = evaluate(eval, input, None).expect("not llm");
        (v.verdict, v.detail)
    }

    pub(super) fn contains_eval(pattern: &str, negate: bool) -> Evaluate {
        Evaluate::Contains(ContainsEval {
            pattern: pattern.into(),
            negate,
            source: None,
        })
    }

    pub(super) fn numeric_eval(operator: Operator, target: f64, key: Option<&str>) -> Evaluate {
        Evaluate::Numeric(NumericEval {
            operator,
            target,
            key: key.map(Into::into),
            source: None,
        })
    }

    pub(super) fn json_eval(
        path: &str,
        operator: Option<Operator>,
        target: Option<serde_json::Value>,
    ) -> Evaluate {
        Evaluate::Json(JsonEval {
            path: path.into(),
            operator,
            target,
            source: None,
        })
    }

    pub(super) fn conv(
        direction: Option<Direction>,
        tolerance: Option<f64>,
        stall_after: u64,
    ) -> ConvergenceEval {
        ConvergenceEval {
            metric: Some("failed".into()),
            target: 0.0,
            direction,
            tolerance,
            stall_after: Some(PositiveInt(stall_after)),
            source: None,
        }
    }

    #[test]
    fn llm_and_always() {
        assert_eq!(
            evaluate(&Evaluate::Llm(LlmEval::default()), &text("x"), None),
            None
        );
        let timed_out = EvalInput {
            timed_out: true,
            ..EvalInput::default()
        };
        assert_eq!(
            evaluate(&Evaluate::Llm(LlmEval::default()), &timed_out, None),
            None
        );
        assert_eq!(run(&Evaluate::Always, &text("")).0, "success");
        assert_eq!(run(&Evaluate::Always, &timed_out).0, "success");
    }

    #[test]
    fn text_evaluators_give_error_when_the_action_did_not_finish() {
        let evals = [
            contains_eval("x", false),
            numeric_eval(Operator::Eq, 1.0, None),
            json_eval("ok", None, None),
            Evaluate::Convergence(conv(None, None, 3)),
            Evaluate::Classify(ClassifyEval::default()),
        ];
        let spawn = EvalInput {
            error: Some("ENOENT"),
            text: "x 1 {\"ok\":true}",
            ..EvalInput::default()
        };
        let timeout = EvalInput {
            timed_out: true,
            text: "x 1 {\"ok\":true}",
            ..EvalInput::default()
        };
        for eval in &evals {
            assert_eq!(run(eval, &spawn).0, "error", "{eval:?}");
            assert_eq!(
                run(eval, &timeout),
                ("error".into(), Some("timed out".into())),
                "{eval:?}"
            );
        }
    }

    #[test]
    fn verdicts_are_declared() {
        // Every verdict an evaluator gives is one the model says it can give.
        let inputs = [
            "",
            "x",
            "failed=0",
            "failed=9",
            "{\"ok\": true}",
            "[1]",
            "1e999",
        ];
        let evals = [
            contains_eval("x", false),
            contains_eval("(", false),
            numeric_eval(Operator::Lt, 1.0, Some("failed")),
            json_eval("ok", Some(Operator::Gt), None),
            json_eval("ok", None, None),
            Evaluate::Convergence(conv(None, None, 1)),
            Evaluate::ExitCode(ExitCodeEval::default()),
        ];
        for eval in &evals {
            let allowed = eval.verdicts().expect("fixed verdicts");
            for input in inputs {
                for memory in [
                    None,
                    Some(ConvergenceMemory {
                        best: Some(5.0),
                        since_progress: 0,
                    }),
                ] {
                    let v = evaluate(eval, &text(input), memory.as_ref()).expect("not llm");
                    assert!(allowed.contains(&v.verdict.as_str()), "{eval:?} gave {v:?}");
                }
            }
        }
    }
}
