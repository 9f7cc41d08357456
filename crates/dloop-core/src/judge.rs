//! The `llm` evaluator's pure half: the prompt a judge is sent, and how its answer becomes a
//! verdict. The runtime does the call (`dloop_runtime::driver::judge`); nothing here does I/O.
//!
//! The judge is asked for one JSON object:
//!
//! ```json
//! {"verdict": "success", "confidence": 0.9,
//!  "evidence": ["test result: ok. 12 passed"], "reason": "all tests pass"}
//! ```
//!
//! Rules, in order ([`judge`]):
//! - an answer with no JSON object in it, or one without a known `verdict`, is `error` and the
//!   raw answer is kept in the `judged` record (the run routes `error`, retries, or fails with it);
//! - `failure` stands as given: a judge saying the work failed needs no proof;
//! - any other verdict (`success`, `partial`, `blocked`) needs at least one piece of evidence,
//!   and every piece must be found in the excerpt the judge was shown (compared with runs of
//!   white space folded to one space, so a quote that re-wraps a line still counts); a verdict
//!   without evidence, or with a quote that is not in the output, counts as `failure`;
//! - a confidence below `min_confidence` (default [`DEFAULT_MIN_CONFIDENCE`]) counts as
//!   `failure`; a missing confidence counts as 0.
//!
//! The output is bounded ([`excerpt`]) so a long transcript never makes an unbounded prompt:
//! its head and its tail, where the outcome of a command or an agent usually is.

use serde::{Deserialize, Serialize};

/// The confidence below which a verdict counts as failure when the evaluator sets none.
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.5;

/// Characters of the output's head the judge sees.
pub const EXCERPT_HEAD: usize = 2_000;

/// Characters of the output's tail the judge sees.
pub const EXCERPT_TAIL: usize = 10_000;

/// The most of an unparseable answer the `judged` record keeps.
pub const RAW_ANSWER_LIMIT: usize = 16_384;

/// The verdicts a judge may give.
pub const VERDICTS: [&str; 4] = ["success", "failure", "partial", "blocked"];

/// The criteria used when the evaluator has no `prompt:`.
pub const DEFAULT_CRITERIA: &str =
    "Did the action fully do what it was asked to do? Judge only from its output.";

/// The judge's answer, parsed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JudgeAnswer {
    /// `success`, `failure`, `partial` or `blocked`.
    pub verdict: String,
    /// 0..=1, as the judge said (0 when it said nothing).
    #[serde(default)]
    pub confidence: f64,
    /// Quotes from the output.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The judge's reason, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a judge's answer means for the state.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeOutcome {
    /// The verdict the state routes on.
    pub verdict: String,
    /// Why, when the verdict is not the judge's own or to say what the judge saw.
    pub detail: Option<String>,
    /// The answer, when it parsed.
    pub answer: Option<JudgeAnswer>,
    /// The raw answer, kept when it did not parse (cut at [`RAW_ANSWER_LIMIT`]).
    pub raw: Option<String>,
}

/// The part of `text` a judge is shown: all of it when short, else its first [`EXCERPT_HEAD`]
/// and last [`EXCERPT_TAIL`] characters with a marker between.
pub fn excerpt(text: &str) -> String {
    let chars = text.chars().count();
    if chars <= EXCERPT_HEAD + EXCERPT_TAIL {
        return text.to_owned();
    }
    let head: String = text.chars().take(EXCERPT_HEAD).collect();
    let tail: String = text.chars().skip(chars - EXCERPT_TAIL).collect();
    format!(
        "{head}\n[... {} characters omitted ...]\n{tail}",
        chars - EXCERPT_HEAD - EXCERPT_TAIL
    )
}

/// The prompt sent to the judge. `criteria` is the evaluator's `prompt:` (interpolated), `task`
/// what the action was asked (a prompt state's prompt, a shell state's command), `output` the
/// [`excerpt`] of what it answered.
pub fn render_prompt(criteria: Option<&str>, task: Option<&str>, output: &str) -> String {
    let criteria = criteria
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or(DEFAULT_CRITERIA);
    let mut prompt = String::from(
        "You are a strict judge of one step of an automated loop. Read the step's output and \
         decide whether it meets the criteria.\n\n",
    );
    prompt.push_str("## Criteria\n\n");
    prompt.push_str(criteria);
    prompt.push_str("\n\n");
    if let Some(task) = task.map(str::trim).filter(|t| !t.is_empty()) {
        prompt.push_str("## What the step was asked\n\n");
        prompt.push_str(&excerpt(task));
        prompt.push_str("\n\n");
    }
    prompt.push_str("## The step's output\n\n<<<OUTPUT\n");
    prompt.push_str(output);
    prompt.push_str("\nOUTPUT>>>\n\n");
    prompt.push_str(
        "## Your answer\n\nAnswer with exactly one JSON object and nothing else:\n\
         {\"verdict\": \"success\" | \"failure\" | \"partial\" | \"blocked\", \
         \"confidence\": <0.0 to 1.0>, \"evidence\": [<exact quotes copied from the output \
         that prove the verdict>], \"reason\": \"<one sentence>\"}\n\
         A verdict other than failure without evidence quoted word for word from the output \
         counts as failure.\n",
    );
    prompt
}

/// Parses a judge's answer: the whole text as JSON, else the inside of a fenced block, else
/// the text from the first `{` to the last `}`.
///
/// # Errors
/// Why no verdict could be read.
pub fn parse_answer(answer: &str) -> Result<JudgeAnswer, String> {
    let trimmed = answer.trim();
    let mut candidates = vec![trimmed];
    if let Some(start) = trimmed.find("```") {
        let body = &trimmed[start + 3..];
        let body = body.strip_prefix("json").unwrap_or(body);
        if let Some(end) = body.find("```") {
            candidates.push(body[..end].trim());
        }
    }
    if let (Some(start), Some(end)) = (trimmed.find('{'), trimmed.rfind('}'))
        && start < end
    {
        candidates.push(&trimmed[start..=end]);
    }
    let value = candidates
        .iter()
        .find_map(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| "the judge's answer holds no JSON object".to_owned())?;
    let verdict = value
        .get("verdict")
        .and_then(serde_json::Value::as_str)
        .map(|v| v.trim().to_ascii_lowercase())
        .ok_or_else(|| "the judge's answer has no `verdict` string".to_owned())?;
    if !VERDICTS.contains(&verdict.as_str()) {
        return Err(format!(
            "the judge's verdict `{verdict}` is not one of success, failure, partial, blocked"
        ));
    }
    let confidence = value
        .get("confidence")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    let evidence = match value.get("evidence") {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let reason = value
        .get("reason")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    Ok(JudgeAnswer {
        verdict,
        confidence,
        evidence,
        reason,
    })
}

/// Runs of white space folded to one space, trimmed.
fn fold_space(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The verdict of a judge's `answer` about `shown` (the excerpt it was given), under
/// `min_confidence` (the evaluator's, or the default). See the module doc for the rules.
pub fn judge(answer: &str, shown: &str, min_confidence: Option<f64>) -> JudgeOutcome {
    let parsed = match parse_answer(answer) {
        Ok(parsed) => parsed,
        Err(why) => {
            let raw: String = answer.chars().take(RAW_ANSWER_LIMIT).collect();
            return JudgeOutcome {
                verdict: "error".to_owned(),
                detail: Some(why),
                answer: None,
                raw: Some(raw),
            };
        }
    };
    let min = min_confidence.unwrap_or(DEFAULT_MIN_CONFIDENCE);
    let demoted = |why: String| Some(format!("judged {} but {why}", parsed.verdict));
    let detail = if parsed.verdict == "failure" {
        parsed.reason.clone()
    } else if parsed.evidence.iter().all(|e| e.trim().is_empty()) {
        demoted("quoted no evidence".to_owned())
    } else if let Some(missing) = {
        let haystack = fold_space(shown);
        parsed
            .evidence
            .iter()
            .find(|e| !haystack.contains(&fold_space(e)))
    } {
        demoted(format!("its evidence is not in the output: {missing:?}"))
    } else if parsed.confidence < min {
        demoted(format!(
            "with confidence {} below min_confidence {min}",
            parsed.confidence
        ))
    } else {
        return JudgeOutcome {
            verdict: parsed.verdict.clone(),
            detail: parsed.reason.clone(),
            answer: Some(parsed),
            raw: None,
        };
    };
    JudgeOutcome {
        verdict: "failure".to_owned(),
        detail,
        answer: Some(parsed),
        raw: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "running 3 tests\ntest a ... ok\ntest result: ok. 3 passed;   0 failed\n";

    #[test]
    fn success_with_evidence_found_stands() {
        let answer = r#"{"verdict":"success","confidence":0.9,"evidence":["test result: ok. 3 passed; 0 failed"],"reason":"green"}"#;
        let outcome = judge(answer, OUTPUT, None);
        assert_eq!(outcome.verdict, "success");
        assert_eq!(outcome.detail.as_deref(), Some("green"));
        assert!(outcome.raw.is_none());
    }

    #[test]
    fn made_up_or_missing_evidence_is_failure() {
        let made_up =
            r#"{"verdict":"success","confidence":0.9,"evidence":["all 40 tests passed"]}"#;
        let outcome = judge(made_up, OUTPUT, None);
        assert_eq!(outcome.verdict, "failure");
        assert!(
            outcome
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("not in the output"))
        );
        for none in [
            r#"{"verdict":"success","confidence":0.9}"#,
            r#"{"verdict":"partial","confidence":0.9,"evidence":[]}"#,
            r#"{"verdict":"blocked","confidence":0.9,"evidence":["  "]}"#,
        ] {
            let outcome = judge(none, OUTPUT, None);
            assert_eq!(outcome.verdict, "failure", "{none}");
            assert!(
                outcome
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.contains("no evidence"))
            );
        }
    }

    #[test]
    fn low_confidence_is_failure_and_failure_needs_no_evidence() {
        let low = r#"{"verdict":"success","confidence":0.6,"evidence":["test a ... ok"]}"#;
        assert_eq!(judge(low, OUTPUT, Some(0.8)).verdict, "failure");
        assert_eq!(judge(low, OUTPUT, None).verdict, "success");
        let failed = r#"{"verdict":"failure","confidence":0.2,"reason":"no tests ran"}"#;
        let outcome = judge(failed, OUTPUT, Some(0.9));
        assert_eq!(outcome.verdict, "failure");
        assert_eq!(outcome.detail.as_deref(), Some("no tests ran"));
    }

    #[test]
    fn garbage_is_error_with_the_raw_answer_kept() {
        for garbage in [
            "I think it worked!",
            "{\"verdict\": \"maybe\"}",
            "[1,2]",
            "",
        ] {
            let outcome = judge(garbage, OUTPUT, None);
            assert_eq!(outcome.verdict, "error", "{garbage}");
            assert_eq!(outcome.raw.as_deref(), Some(garbage));
            assert!(outcome.detail.is_some());
        }
    }

    #[test]
    fn answers_in_fences_or_prose_parse() {
        let fenced = "Here you go:\n```json\n{\"verdict\":\"Blocked\",\"confidence\":1,\"evidence\":\"test a ... ok\"}\n```\n";
        let parsed = parse_answer(fenced).expect("parses");
        assert_eq!(parsed.verdict, "blocked");
        assert_eq!(parsed.evidence, vec!["test a ... ok".to_owned()]);
        let prose = "Verdict follows {\"verdict\":\"failure\"} done";
        assert_eq!(parse_answer(prose).expect("parses").verdict, "failure");
    }

    #[test]
    fn excerpt_keeps_head_and_tail_of_long_output() {
        let long = format!(
            "{}{}{}",
            "h".repeat(3000),
            "m".repeat(20_000),
            "t".repeat(10_000)
        );
        let cut = excerpt(&long);
        assert!(cut.starts_with(&"h".repeat(2000)));
        assert!(cut.ends_with(&"t".repeat(10_000)));
        assert!(cut.contains("21000 characters omitted"));
        assert_eq!(excerpt(OUTPUT), OUTPUT);
    }

    #[test]
    fn prompt_names_criteria_task_output_and_the_json_shape() {
        let prompt = render_prompt(Some("Are the tests green?"), Some("fix it"), OUTPUT);
        assert!(prompt.contains("Are the tests green?"));
        assert!(prompt.contains("fix it"));
        assert!(prompt.contains(OUTPUT));
        assert!(prompt.contains("\"evidence\""));
        assert!(render_prompt(None, None, "x").contains(DEFAULT_CRITERIA));
    }
}
