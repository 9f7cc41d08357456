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

use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::model::{
    ClassifyEval, ContainsEval, ConvergenceEval, Direction, Evaluate, ExitCodeEval, JsonEval,
    LineSelector, NumericEval, Operator,
};

/// The default `stall_after` of `convergence`.
pub const DEFAULT_STALL_AFTER: u32 = 3;

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

/// What `convergence` remembers between visits of its state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceMemory {
    /// The best metric seen so far (`None` before the first visit).
    pub best: Option<f64>,
    /// Visits in a row without progress.
    pub since_progress: u32,
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

/// `exit_code`: `success` when the code is in `success_codes` (default `[0]`); `error` when the
/// action could not start, timed out, was killed by a signal, or exited 126 (not executable) or
/// 127 (not found) without those being listed; `failure` for every other code (1..=125, and
/// 128+ when no signal was reported).
fn exit_code(eval: &ExitCodeEval, input: &EvalInput) -> Verdict {
    if let Some(error) = input.error {
        return Verdict::new("error", format!("could not start: {error}"));
    }
    if input.timed_out {
        return Verdict::new("error", "timed out");
    }
    if let Some(signal) = input.signal {
        return Verdict::new("error", format!("killed by signal {signal}"));
    }
    let Some(code) = input.exit_code else {
        return Verdict::new("error", "no exit code");
    };
    let success = match &eval.success_codes {
        Some(codes) => codes.contains(&code),
        None => code == 0,
    };
    match code {
        _ if success => Verdict::new("success", format!("exit {code}")),
        126 => Verdict::new("error", "exit 126 (command not executable)"),
        127 => Verdict::new("error", "exit 127 (command not found)"),
        _ => Verdict::new("failure", format!("exit {code}")),
    }
}

/// `contains`: `success` when the regex (multi-line: `^`/`$` match at line ends) matches the
/// text, `failure` when not; `negate` swaps them. An invalid pattern gives `error`.
fn contains(eval: &ContainsEval, text: &str) -> Verdict {
    let regex = match RegexBuilder::new(&eval.pattern).multi_line(true).build() {
        Ok(regex) => regex,
        Err(err) => return Verdict::new("error", format!("invalid pattern: {err}")),
    };
    let found = regex.find(text);
    let detail = match &found {
        Some(m) => format!("matched `{}`", shorten(m.as_str(), 80)),
        None => format!("no match for `{}`", shorten(&eval.pattern, 80)),
    };
    Verdict::pass_fail(found.is_some() != eval.negate, detail)
}

/// `numeric`: compares the number read by [`read_number`] with `target`; no number is `error`.
fn numeric(eval: &NumericEval, text: &str) -> Verdict {
    let Some(value) = read_number(text, eval.key.as_deref()) else {
        return Verdict::new("error", no_number(eval.key.as_deref()));
    };
    let ok = compare_f64(eval.operator, value, eval.target);
    Verdict::pass_fail(
        ok,
        format!(
            "read {value}, wanted {} {}",
            op_name(eval.operator),
            eval.target
        ),
    )
    .with_metric(value)
}

/// `json`: reads the text as JSON (or, failing that, the last line that is a JSON object or
/// array: agents print noise around it), follows the dotted `path` (numeric segments index
/// arrays; an empty path is the whole document) and compares the value with `target` (default
/// `true`) using `operator` (default `eq`).
///
/// Numbers compare numerically (`1` equals `1.0`); other values support only `eq`/`ne`
/// (structural equality), and `lt`/`le`/`gt`/`ge` on them is `error`. No JSON, or a path that
/// is missing, is `error`: the output did not say, which is not the same as saying no.
fn json(eval: &JsonEval, text: &str) -> Verdict {
    let Some(document) = read_json(text) else {
        return Verdict::new("error", "no JSON document in the text");
    };
    let mut value = &document;
    if !eval.path.is_empty() {
        for segment in eval.path.split('.') {
            let next = match value {
                serde_json::Value::Object(map) => map.get(segment),
                serde_json::Value::Array(items) => {
                    segment.parse::<usize>().ok().and_then(|i| items.get(i))
                }
                _ => None,
            };
            match next {
                Some(next) => value = next,
                None => {
                    return Verdict::new(
                        "error",
                        format!("path `{}` not found (no `{segment}`)", eval.path),
                    );
                }
            }
        }
    }
    let operator = eval.operator.unwrap_or(Operator::Eq);
    let target = eval.target.clone().unwrap_or(serde_json::Value::Bool(true));
    let shown = shorten(&value.to_string(), 80);
    let place = if eval.path.is_empty() {
        "the document".to_owned()
    } else {
        format!("`{}`", eval.path)
    };
    let detail = format!("{place} is {shown}, wanted {} {target}", op_name(operator));
    if let (Some(a), Some(b)) = (value.as_f64(), target.as_f64()) {
        return Verdict::pass_fail(compare_f64(operator, a, b), detail).with_metric(a);
    }
    match operator {
        Operator::Eq => Verdict::pass_fail(*value == target, detail),
        Operator::Ne => Verdict::pass_fail(*value != target, detail),
        _ => Verdict::new(
            "error",
            format!(
                "{place} is {shown}: `{}` compares numbers only; use eq or ne",
                op_name(operator)
            ),
        ),
    }
}

/// `convergence`: reads the metric like `numeric` (key `metric`). In order: no number is
/// `error`; reaching `target` (≤ for `down`, ≥ for `up`) is `target`; the first visit is
/// `progress`; otherwise the visit is progress when it beats the best so far by more than 0 and
/// at least `tolerance`, and after `stall_after` (default 3) visits in a row without progress the
/// verdict is `stall`. Visits without progress before that are still `progress` ("keep going";
/// the detail says no improvement).
fn convergence(eval: &ConvergenceEval, text: &str, memory: &ConvergenceMemory) -> Verdict {
    let Some(value) = read_number(text, eval.metric.as_deref()) else {
        return Verdict::new("error", no_number(eval.metric.as_deref()));
    };
    let direction = eval.direction.unwrap_or_default();
    let reached = match direction {
        Direction::Down => value <= eval.target,
        Direction::Up => value >= eval.target,
    };
    if reached {
        return Verdict::new(
            "target",
            format!("{value} reached the target {}", eval.target),
        )
        .with_metric(value);
    }
    let Some(best) = memory.best else {
        return Verdict::new("progress", format!("first reading {value}")).with_metric(value);
    };
    let next = update_memory(eval, memory, value);
    let stall_after = stall_after(eval);
    if next.since_progress == 0 {
        Verdict::new("progress", format!("{value}, best was {best}")).with_metric(value)
    } else if next.since_progress >= stall_after {
        Verdict::new(
            "stall",
            format!(
                "{value}: no progress in {} visits (best {best})",
                next.since_progress
            ),
        )
        .with_metric(value)
    } else {
        Verdict::new(
            "progress",
            format!(
                "{value}: no improvement on {best} ({} of {stall_after} before stall)",
                next.since_progress
            ),
        )
        .with_metric(value)
    }
}

fn stall_after(eval: &ConvergenceEval) -> u32 {
    eval.stall_after.map_or(DEFAULT_STALL_AFTER, |n| {
        u32::try_from(n.0).unwrap_or(u32::MAX)
    })
}

/// The memory after a visit that read `metric`: the first reading, or one that improves on
/// `best` by more than 0 and at least `tolerance` (a negative tolerance counts as 0), becomes
/// the new best and resets `since_progress`; any other reading adds one to `since_progress`.
/// Non-finite metrics count as no progress.
pub fn update_memory(
    eval: &ConvergenceEval,
    memory: &ConvergenceMemory,
    metric: f64,
) -> ConvergenceMemory {
    let tolerance = eval
        .tolerance
        .filter(|t| t.is_finite())
        .unwrap_or(0.0)
        .max(0.0);
    let progress = metric.is_finite()
        && match memory.best {
            None => true,
            Some(best) => {
                let gain = match eval.direction.unwrap_or_default() {
                    Direction::Down => best - metric,
                    Direction::Up => metric - best,
                };
                gain > 0.0 && gain >= tolerance
            }
        };
    if progress {
        ConvergenceMemory {
            best: Some(metric),
            since_progress: 0,
        }
    } else {
        ConvergenceMemory {
            best: memory.best,
            since_progress: memory.since_progress.saturating_add(1),
        }
    }
}

/// `classify`: the chosen non-empty line (`last`, `first`, or the Nth from 1), trimmed of
/// surrounding whitespace; case and inner spaces are kept, so routes match the text exactly.
/// No such line is `error`.
fn classify(eval: &ClassifyEval, text: &str) -> Verdict {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let chosen = match eval.line {
        LineSelector::Last => lines.next_back(),
        LineSelector::First => lines.next(),
        LineSelector::Nth(n) => usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| lines.nth(i)),
    };
    match chosen {
        Some(line) => Verdict {
            verdict: line.to_owned(),
            detail: None,
            metric: None,
        },
        None => {
            let count = text.lines().filter(|line| !line.trim().is_empty()).count();
            let wanted = match eval.line {
                LineSelector::Last => "last".to_owned(),
                LineSelector::First => "first".to_owned(),
                LineSelector::Nth(n) => format!("number {n}"),
            };
            Verdict::new(
                "error",
                format!("no line {wanted}: the text has {count} non-empty lines"),
            )
        }
    }
}

const NUMBER: &str = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?";

fn number_regex() -> &'static Regex {
    static REGEX: OnceLock<Regex> = OnceLock::new();
    REGEX.get_or_init(|| Regex::new(NUMBER).expect("the number pattern is a valid regex"))
}

/// The number a `numeric` or `convergence` evaluator reads from `text`, or `None`.
///
/// With `key`: the number after the last `KEY=NUMBER` or `KEY: NUMBER` (spaces allowed around
/// `=`/`:`), where KEY starts the line or follows a character that cannot be part of a key
/// (so `failed=3` is found in `tests: failed=3`, but not in `unfailed=3`). Without: the last
/// number anywhere in the text. A sign counts only when it does not follow a letter or digit
/// (`x-5` reads 5). Infinite or NaN values are ignored.
pub fn read_number(text: &str, key: Option<&str>) -> Option<f64> {
    match key {
        Some(key) => {
            let pattern = format!(
                r"(?m)(?:^|[^A-Za-z0-9_.-]){}[ \t]*[=:][ \t]*({NUMBER})",
                regex::escape(key)
            );
            let regex = Regex::new(&pattern).ok()?;
            regex
                .captures_iter(text)
                .filter_map(|c| c.get(1))
                .filter_map(|m| parse_number(text, m.start(), m.as_str()))
                .last()
        }
        None => number_regex()
            .find_iter(text)
            .filter_map(|m| parse_number(text, m.start(), m.as_str()))
            .last(),
    }
}

/// Parses a matched number, dropping a sign that follows a letter or digit.
fn parse_number(text: &str, start: usize, found: &str) -> Option<f64> {
    let glued = text[..start]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric());
    let digits = if glued {
        found.trim_start_matches(['-', '+'])
    } else {
        found
    };
    digits.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The whole text as JSON, else the last line that parses as a JSON object or array.
fn read_json(text: &str) -> Option<serde_json::Value> {
    if let Ok(value) = serde_json::from_str(text.trim()) {
        return Some(value);
    }
    text.lines()
        .rev()
        .map(str::trim)
        .filter(|line| line.starts_with(['{', '[']))
        .find_map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .filter(|v| v.is_object() || v.is_array())
        })
}

fn compare_f64(operator: Operator, a: f64, b: f64) -> bool {
    match operator {
        Operator::Eq => a == b,
        Operator::Ne => a != b,
        Operator::Lt => a < b,
        Operator::Le => a <= b,
        Operator::Gt => a > b,
        Operator::Ge => a >= b,
    }
}

fn op_name(operator: Operator) -> &'static str {
    match operator {
        Operator::Eq => "eq",
        Operator::Ne => "ne",
        Operator::Lt => "lt",
        Operator::Le => "le",
        Operator::Gt => "gt",
        Operator::Ge => "ge",
    }
}

fn no_number(key: Option<&str>) -> String {
    match key {
        Some(key) => format!("no `{key}=NUMBER` or `{key}: NUMBER` line in the text"),
        None => "no number in the text".to_owned(),
    }
}

/// At most `max` characters of `text`, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    let mut short: String = text.chars().take(max).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{LlmEval, PositiveInt};

    fn text(text: &str) -> EvalInput<'_> {
        EvalInput {
            exit_code: Some(0),
            text,
            ..EvalInput::default()
        }
    }

    /// (verdict, detail) of evaluating; `None` for llm.
    fn run(eval: &Evaluate, input: &EvalInput) -> (String, Option<String>) {
        let v = evaluate(eval, input, None).expect("not llm");
        (v.verdict, v.detail)
    }

    #[test]
    fn exit_code_table() {
        let default = Evaluate::ExitCode(ExitCodeEval::default());
        let listed = Evaluate::ExitCode(ExitCodeEval {
            success_codes: Some(vec![0, 1, 127]),
        });
        let code = |c| EvalInput {
            exit_code: Some(c),
            ..EvalInput::default()
        };
        let cases: Vec<(&Evaluate, EvalInput, &str, &str)> = vec![
            (&default, code(0), "success", "exit 0"),
            (&default, code(1), "failure", "exit 1"),
            (&default, code(2), "failure", "exit 2"),
            (&default, code(125), "failure", "exit 125"),
            (
                &default,
                code(126),
                "error",
                "exit 126 (command not executable)",
            ),
            (&default, code(127), "error", "exit 127 (command not found)"),
            (&default, code(128), "failure", "exit 128"),
            (&default, code(137), "failure", "exit 137"),
            (&default, code(255), "failure", "exit 255"),
            (&default, code(-1), "failure", "exit -1"),
            (&listed, code(1), "success", "exit 1"),
            (&listed, code(127), "success", "exit 127"),
            (&listed, code(2), "failure", "exit 2"),
            (
                &listed,
                code(126),
                "error",
                "exit 126 (command not executable)",
            ),
            (
                &default,
                EvalInput {
                    signal: Some(9),
                    ..EvalInput::default()
                },
                "error",
                "killed by signal 9",
            ),
            (
                &default,
                EvalInput {
                    exit_code: Some(0),
                    signal: Some(15),
                    ..EvalInput::default()
                },
                "error",
                "killed by signal 15",
            ),
            (
                &default,
                EvalInput {
                    timed_out: true,
                    signal: Some(9),
                    ..EvalInput::default()
                },
                "error",
                "timed out",
            ),
            (
                &listed,
                EvalInput {
                    error: Some("no such file"),
                    ..EvalInput::default()
                },
                "error",
                "could not start: no such file",
            ),
            (&default, EvalInput::default(), "error", "no exit code"),
        ];
        for (eval, input, verdict, detail) in cases {
            assert_eq!(
                run(eval, &input),
                (verdict.into(), Some(detail.into())),
                "{input:?}"
            );
        }
    }

    fn contains_eval(pattern: &str, negate: bool) -> Evaluate {
        Evaluate::Contains(ContainsEval {
            pattern: pattern.into(),
            negate,
            source: None,
        })
    }

    #[test]
    fn contains_table() {
        let cases = [
            ("PASS", false, "all PASS", "success"),
            ("PASS", false, "all fail", "failure"),
            ("PASS", true, "all PASS", "failure"),
            ("PASS", true, "all fail", "success"),
            ("^ok$", false, "first\nok\nlast", "success"),
            ("^ok$", false, "not ok here", "failure"),
            ("(?i)done", false, "DONE", "success"),
            ("fix(", false, "fix(", "error"),
            ("fix(", true, "anything", "error"),
            ("", false, "", "success"),
            ("ünï", false, "→ ünï ←", "success"),
        ];
        for (pattern, negate, input, verdict) in cases {
            let (got, detail) = run(&contains_eval(pattern, negate), &text(input));
            assert_eq!(got, verdict, "{pattern:?} on {input:?}: {detail:?}");
        }
        let (_, detail) = run(&contains_eval("fix(", false), &text(""));
        assert!(detail.expect("detail").starts_with("invalid pattern"));
    }

    #[test]
    fn read_number_table() {
        let cases: &[(&str, Option<&str>, Option<f64>)] = &[
            ("failed=3", Some("failed"), Some(3.0)),
            ("failed = 3\nfailed: 5", Some("failed"), Some(5.0)),
            ("failed: 5\nfailed=2", Some("failed"), Some(2.0)),
            ("tests: failed=3 passed=10", Some("failed"), Some(3.0)),
            ("tests: failed=3 passed=10", Some("passed"), Some(10.0)),
            ("unfailed=3", Some("failed"), None),
            ("line_coverage=50", Some("coverage"), None),
            ("coverage: 85.5%", Some("coverage"), Some(85.5)),
            ("score=-1.5e2", Some("score"), Some(-150.0)),
            ("a.b=4", Some("a.b"), Some(4.0)),
            ("axb=4", Some("a.b"), None),
            ("failed=", Some("failed"), None),
            ("nothing", Some("failed"), None),
            ("3 of 10 tests failed", None, Some(10.0)),
            ("took 1.25s", None, Some(1.25)),
            ("delta -4", None, Some(-4.0)),
            ("range x-5", None, Some(5.0)),
            ("3-5", None, Some(5.0)),
            ("ends with 7.", None, Some(7.0)),
            ("no digits", None, None),
            ("", None, None),
            ("1e999", None, None),
            ("٣", None, None),
        ];
        for (input, key, expected) in cases {
            assert_eq!(read_number(input, *key), *expected, "{input:?} key {key:?}");
        }
    }

    fn numeric_eval(operator: Operator, target: f64, key: Option<&str>) -> Evaluate {
        Evaluate::Numeric(NumericEval {
            operator,
            target,
            key: key.map(Into::into),
            source: None,
        })
    }

    #[test]
    fn numeric_table() {
        use Operator::*;
        let cases = [
            (Eq, 0.0, Some("failed"), "failed=0", "success", Some(0.0)),
            (Eq, 0.0, Some("failed"), "failed=2", "failure", Some(2.0)),
            (Ne, 0.0, None, "2", "success", Some(2.0)),
            (Ne, 2.0, None, "2", "failure", Some(2.0)),
            (Lt, 5.0, None, "4.9", "success", Some(4.9)),
            (Lt, 5.0, None, "5", "failure", Some(5.0)),
            (Le, 5.0, None, "5", "success", Some(5.0)),
            (
                Gt,
                80.0,
                Some("coverage"),
                "coverage: 80.1",
                "success",
                Some(80.1),
            ),
            (
                Gt,
                80.0,
                Some("coverage"),
                "coverage: 80",
                "failure",
                Some(80.0),
            ),
            (
                Ge,
                80.0,
                Some("coverage"),
                "coverage: 80",
                "success",
                Some(80.0),
            ),
            (
                Ge,
                80.0,
                Some("coverage"),
                "no coverage here",
                "error",
                None,
            ),
            (Eq, 0.0, None, "", "error", None),
        ];
        for (op, target, key, input, verdict, metric) in cases {
            let v = evaluate(&numeric_eval(op, target, key), &text(input), None).expect("not llm");
            assert_eq!(
                (v.verdict.as_str(), v.metric),
                (verdict, metric),
                "{input:?} {op:?}"
            );
        }
    }

    fn json_eval(
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

    #[test]
    fn json_table() {
        use Operator::*;
        let doc = r#"{"ok": true, "summary": {"failed": 0, "name": "unit"}, "items": [{"ok": false}, 3]}"#;
        let noisy = "Working...\n{\"not json\n{\"ok\": true, \"n\": 2}\ndone.";
        let cases = [
            ("ok", None, None, doc, "success"),
            ("items.0.ok", None, None, doc, "failure"),
            ("items.0.ok", Some(Ne), None, doc, "success"),
            ("summary.failed", Some(Eq), Some(json!(0)), doc, "success"),
            ("summary.failed", Some(Eq), Some(json!(0.0)), doc, "success"),
            ("summary.failed", Some(Gt), Some(json!(0)), doc, "failure"),
            ("items.1", Some(Ge), Some(json!(3)), doc, "success"),
            (
                "summary.name",
                Some(Eq),
                Some(json!("unit")),
                doc,
                "success",
            ),
            (
                "summary.name",
                Some(Ne),
                Some(json!("unit")),
                doc,
                "failure",
            ),
            ("summary.name", Some(Lt), Some(json!("z")), doc, "error"),
            ("ok", Some(Gt), None, doc, "error"),
            ("summary.failed", Some(Eq), Some(json!("0")), doc, "failure"),
            (
                "summary",
                Some(Eq),
                Some(json!({"failed": 0, "name": "unit"})),
                doc,
                "success",
            ),
            ("", Some(Ne), Some(json!(null)), doc, "success"),
            ("missing", None, None, doc, "error"),
            ("items.9", None, None, doc, "error"),
            ("items.x", None, None, doc, "error"),
            ("ok.deeper", None, None, doc, "error"),
            ("ok", None, None, noisy, "success"),
            ("n", Some(Eq), Some(json!(2)), noisy, "success"),
            ("0", Some(Eq), Some(json!(1)), "log line\n[1, 2]", "success"),
            ("ok", None, None, "no json here", "error"),
            ("ok", None, None, "", "error"),
            ("", Some(Eq), Some(json!(5)), "5", "success"),
        ];
        for (path, op, target, input, verdict) in cases {
            let (got, detail) = run(&json_eval(path, op, target.clone()), &text(input));
            assert_eq!(
                got, verdict,
                "{path:?} {op:?} {target:?} on {input:?}: {detail:?}"
            );
        }
        let v = evaluate(
            &json_eval("summary.failed", Some(Eq), Some(json!(0))),
            &text(doc),
            None,
        )
        .expect("not llm");
        assert_eq!(v.metric, Some(0.0));
        assert_eq!(
            v.detail.as_deref(),
            Some("`summary.failed` is 0, wanted eq 0")
        );
        let v = evaluate(
            &json_eval("", Some(Lt), Some(json!(1))),
            &text("\"a\""),
            None,
        )
        .expect("not llm");
        let want = "the document is \"a\": `lt` compares numbers only; use eq or ne";
        assert_eq!(v.detail.as_deref(), Some(want));
    }

    fn conv(
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

    /// Runs a sequence of readings through evaluate + update_memory, as the runtime and the
    /// fold would, returning the verdicts.
    fn visits(eval: &ConvergenceEval, readings: &[&str]) -> Vec<String> {
        let mut memory = ConvergenceMemory::default();
        let wrapped = Evaluate::Convergence(eval.clone());
        readings
            .iter()
            .map(|reading| {
                let v = evaluate(&wrapped, &text(reading), Some(&memory)).expect("not llm");
                if let Some(metric) = v.metric {
                    memory = update_memory(eval, &memory, metric);
                }
                v.verdict
            })
            .collect()
    }

    #[test]
    fn convergence_table() {
        let down = conv(None, None, 3);
        let up = ConvergenceEval {
            target: 90.0,
            ..conv(Some(Direction::Up), None, 2)
        };
        let tol = conv(None, Some(2.0), 2);
        let cases: Vec<(&ConvergenceEval, Vec<&str>, Vec<&str>)> = vec![
            (
                &down,
                vec!["failed=5", "failed=3", "failed=0"],
                vec!["progress", "progress", "target"],
            ),
            (&down, vec!["failed=0"], vec!["target"]),
            (&down, vec!["failed=-1"], vec!["target"]),
            (
                &down,
                vec!["failed=5", "failed=5", "failed=6", "failed=5"],
                vec!["progress", "progress", "progress", "stall"],
            ),
            (
                &down,
                vec!["failed=5", "failed=5", "failed=5", "failed=4", "failed=4"],
                vec!["progress", "progress", "progress", "progress", "progress"],
            ),
            (
                &down,
                vec!["failed=5", "nothing", "failed=4"],
                vec!["progress", "error", "progress"],
            ),
            (
                &up,
                vec!["failed=50", "failed=60", "failed=90"],
                vec!["progress", "progress", "target"],
            ),
            (
                &up,
                vec!["failed=50", "failed=40", "failed=50"],
                vec!["progress", "progress", "stall"],
            ),
            (&up, vec!["failed=95"], vec!["target"]),
            (
                &tol,
                vec!["failed=10", "failed=9", "failed=8"],
                vec!["progress", "progress", "progress"],
            ),
            (
                &tol,
                vec!["failed=10", "failed=9", "failed=8.5"],
                vec!["progress", "progress", "stall"],
            ),
            (
                &tol,
                vec!["failed=10", "failed=8", "failed=6"],
                vec!["progress", "progress", "progress"],
            ),
        ];
        for (eval, readings, expected) in cases {
            assert_eq!(
                visits(eval, &readings),
                expected,
                "{readings:?} with {eval:?}"
            );
        }
    }

    #[test]
    fn update_memory_table() {
        let down = conv(None, None, 3);
        let up = conv(Some(Direction::Up), Some(1.0), 3);
        let mem = |best: Option<f64>, since| ConvergenceMemory {
            best,
            since_progress: since,
        };
        let cases = [
            (&down, mem(None, 0), 5.0, mem(Some(5.0), 0)),
            (&down, mem(Some(5.0), 2), 4.0, mem(Some(4.0), 0)),
            (&down, mem(Some(5.0), 2), 5.0, mem(Some(5.0), 3)),
            (&down, mem(Some(5.0), 0), 6.0, mem(Some(5.0), 1)),
            (
                &down,
                mem(Some(5.0), u32::MAX),
                6.0,
                mem(Some(5.0), u32::MAX),
            ),
            (&down, mem(Some(5.0), 0), f64::NAN, mem(Some(5.0), 1)),
            (&up, mem(Some(5.0), 1), 5.5, mem(Some(5.0), 2)),
            (&up, mem(Some(5.0), 1), 6.0, mem(Some(6.0), 0)),
            (&up, mem(Some(5.0), 1), 4.0, mem(Some(5.0), 2)),
        ];
        for (eval, before, metric, after) in cases {
            assert_eq!(
                update_memory(eval, &before, metric),
                after,
                "{before:?} + {metric}"
            );
        }
    }

    #[test]
    fn convergence_memory_round_trips() {
        let memory = ConvergenceMemory {
            best: Some(2.5),
            since_progress: 1,
        };
        let json = serde_json::to_string(&memory).expect("serializes");
        assert_eq!(
            serde_json::from_str::<ConvergenceMemory>(&json).expect("reads"),
            memory
        );
    }

    #[test]
    fn classify_table() {
        let eval = |line| Evaluate::Classify(ClassifyEval { line, source: None });
        let out = "\n  first line \n\nSecond Line\n   \n  last  \n\n";
        let cases = [
            (LineSelector::Last, out, "last"),
            (LineSelector::First, out, "first line"),
            (LineSelector::Nth(1), out, "first line"),
            (LineSelector::Nth(2), out, "Second Line"),
            (LineSelector::Nth(3), out, "last"),
            (LineSelector::Nth(4), out, "error"),
            (LineSelector::Nth(u64::MAX), out, "error"),
            (LineSelector::Last, "", "error"),
            (LineSelector::First, " \n\t\n", "error"),
            (LineSelector::Last, "one\r\ntwo\r\n", "two"),
        ];
        for (line, input, verdict) in cases {
            assert_eq!(
                run(&eval(line), &text(input)).0,
                verdict,
                "{line:?} on {input:?}"
            );
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
