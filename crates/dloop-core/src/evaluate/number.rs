//! Reading numbers out of text, and the `numeric` evaluator built on it (also used by
//! `convergence` and `json`).
//!
//! Invariants: [`read_number`] never returns an infinite or NaN value; a sign glued to a letter
//! or digit (`x-5`) is not part of the number.

use std::sync::OnceLock;

use regex::Regex;

use super::Verdict;
use crate::model::{NumericEval, Operator};

/// `numeric`: compares the number read by [`read_number`] with `target`; no number is `error`.
pub(super) fn numeric(eval: &NumericEval, text: &str) -> Verdict {
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

const NUMBER: &str = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?";

pub(super) fn number_regex() -> &'static Regex {
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
pub(super) fn parse_number(text: &str, start: usize, found: &str) -> Option<f64> {
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

pub(super) fn compare_f64(operator: Operator, a: f64, b: f64) -> bool {
    match operator {
        Operator::Eq => a == b,
        Operator::Ne => a != b,
        Operator::Lt => a < b,
        Operator::Le => a <= b,
        Operator::Gt => a > b,
        Operator::Ge => a >= b,
    }
}

pub(super) fn op_name(operator: Operator) -> &'static str {
    match operator {
        Operator::Eq => "eq",
        Operator::Ne => "ne",
        Operator::Lt => "lt",
        Operator::Le => "le",
        Operator::Gt => "gt",
        Operator::Ge => "ge",
    }
}

pub(super) fn no_number(key: Option<&str>) -> String {
    match key {
        Some(key) => format!("no `{key}=NUMBER` or `{key}: NUMBER` line in the text"),
        None => "no number in the text".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{numeric_eval, text};
    use super::super::*;
    use crate::model::Operator;

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
}
