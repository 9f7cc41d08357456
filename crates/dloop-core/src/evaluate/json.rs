//! The `json` evaluator: find a JSON document in the text, follow a dotted path, compare.
//!
//! Invariant: no document, or a missing path, is `error` (the output did not say), never
//! `failure`; ordering operators on non-numbers are `error` too.

use super::number::{compare_f64, op_name};
use super::{Verdict, shorten};
use crate::model::{JsonEval, Operator};

/// `json`: reads the text as JSON (or, failing that, the last line that is a JSON object or
/// array: agents print noise around it), follows the dotted `path` (numeric segments index
/// arrays; an empty path is the whole document) and compares the value with `target` (default
/// `true`) using `operator` (default `eq`).
///
/// Numbers compare numerically (`1` equals `1.0`); other values support only `eq`/`ne`
/// (structural equality), and `lt`/`le`/`gt`/`ge` on them is `error`. No JSON, or a path that
/// is missing, is `error`: the output did not say, which is not the same as saying no.
pub(super) fn json(eval: &JsonEval, text: &str) -> Verdict {
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

/// The whole text as JSON, else the last line that parses as a JSON object or array.
pub(super) fn read_json(text: &str) -> Option<serde_json::Value> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{json_eval, run, text};
    use super::super::*;
    use crate::model::Operator;

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
}
