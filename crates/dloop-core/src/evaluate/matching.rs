//! The output-matching evaluators: `contains` (a regex over the text) and `classify` (a chosen
//! line of the text is the verdict).
//!
//! Invariants: an invalid `contains` pattern is an `error` verdict, never a panic; `classify`
//! keeps case and inner spaces of the chosen line so routes match the text exactly.

use regex::RegexBuilder;

use super::{Verdict, shorten};
use crate::model::{ClassifyEval, ContainsEval, LineSelector};

/// `contains`: `success` when the regex (multi-line: `^`/`$` match at line ends) matches the
/// text, `failure` when not; `negate` swaps them. An invalid pattern gives `error`.
pub(super) fn contains(eval: &ContainsEval, text: &str) -> Verdict {
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

/// `classify`: the chosen non-empty line (`last`, `first`, or the Nth from 1), trimmed of
/// surrounding whitespace; case and inner spaces are kept, so routes match the text exactly.
/// No such line is `error`.
pub(super) fn classify(eval: &ClassifyEval, text: &str) -> Verdict {
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

#[cfg(test)]
mod tests {
    use super::super::tests::{contains_eval, run, text};
    use super::super::*;
    use crate::model::{ClassifyEval, LineSelector};

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
}
