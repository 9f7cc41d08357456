//! `dloop logs`: one readable line per log record (`seq  time  type  key fields`), and the
//! raw JSON Lines form. Lines are rendered one at a time so a 1 GB log streams in constant
//! memory.

use dloop_core::{Event, Record};

use super::Paint;
use super::run_view::{duration, first_line};

/// Every record type a log can hold (DESIGN.md section 5), the values `logs --type` accepts.
pub(crate) const EVENT_TYPES: &[&str] = &[
    "run_started",
    "state_entered",
    "action_started",
    "action_finished",
    "action_interrupted",
    "evaluated",
    "judged",
    "transitioned",
    "retry_scheduled",
    "rate_limited",
    "handoff_detected",
    "agent_session",
    "agent_unavailable",
    "run_options",
    "run_paused",
    "run_resumed",
    "run_completed",
    "run_failed",
    "run_timed_out",
    "run_cancelled",
    "scope_waiting",
    "scope_acquired",
    "definition_reloaded",
    "run_rewound",
    "forked_from",
    "replayed_from",
    "sub_loop_started",
    "sub_loop_of",
    "log_repaired",
];

/// The width of the type column: the longest type name.
const TYPE_WIDTH: usize = 19;

/// `record` as a JSON line (with `\n`): the record as stored, without the store-level `crc`
/// and `_more` keys.
pub(crate) fn json_line(record: &Record) -> String {
    let mut line = serde_json::to_string(record).expect("records always serialize");
    line.push('\n');
    line
}

/// `record` as one aligned line (with `\n`): `   12  10:41:33.120  transitioned  check → fix (failure)`.
/// The time is UTC.
pub(crate) fn human_line(record: &Record, color: bool) -> String {
    let ts = record.ts.to_string();
    let time = &ts[11..23];
    let kind = record.event.type_name();
    let paint = match &record.event {
        Event::RunFailed { .. } | Event::LogRepaired { .. } => Some(Paint::Red),
        Event::RunCompleted { .. } => Some(Paint::Green),
        Event::RunPaused { .. }
        | Event::RunTimedOut { .. }
        | Event::RateLimited { .. }
        | Event::AgentUnavailable { .. } => Some(Paint::Yellow),
        _ => None,
    };
    let padded = format!("{kind:<TYPE_WIDTH$}");
    let shown = paint.map_or_else(|| padded.clone(), |p| p.apply(color, &padded));
    let details = details(&record.event);
    let line = format!(
        "{:>5}  {}  {shown}  {details}",
        record.seq,
        Paint::Dim.apply(color, time)
    );
    format!("{}\n", line.trim_end())
}

/// The key fields of an event, short.
fn details(event: &Event) -> String {
    match event {
        Event::RunStarted {
            loop_name,
            initial,
            max_steps,
            context,
            ..
        } => {
            let mut text = format!("loop {loop_name}, from {initial}, max_steps {max_steps}");
            if !context.is_empty() {
                let pairs: Vec<String> = context
                    .iter()
                    .map(|(k, v)| format!("{k}={}", first_line(v, 30)))
                    .collect();
                text.push_str(&format!(", context {}", pairs.join(" ")));
            }
            text
        }
        Event::StateEntered { state, step, visit } => {
            format!("{state} (step {step}, visit {visit})")
        }
        Event::ActionStarted {
            state,
            kind,
            output_path,
            profile,
            continues_session,
            ..
        } => {
            let kind = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let mut text = format!("{state} {kind}");
            if let Some(profile) = profile {
                text.push_str(&format!(" ({profile})"));
            }
            if let Some(session) = continues_session {
                text.push_str(&format!(", continuing session {session}"));
            }
            text.push_str(&format!(" → {output_path}"));
            text
        }
        Event::ActionFinished { state, result, .. } => {
            let how = match (&result.error, result.timed_out, result.exit_code) {
                (Some(e), _, _) => format!("not started: {}", first_line(e, 60)),
                (None, Some(_), _) => "timed out".to_owned(),
                (None, None, Some(code)) => format!("exit {code}"),
                (None, None, None) => format!("signal {}", result.signal.unwrap_or(0)),
            };
            let excerpt = first_line(&result.excerpt, 60);
            let mut text = format!(
                "{state} {how} in {}, {} bytes",
                duration(result.duration_ms),
                result.bytes
            );
            if !excerpt.is_empty() {
                text.push_str(&format!(": {excerpt}"));
            }
            text
        }
        Event::ActionInterrupted { state, reason, .. } => format!("{state}: {reason}"),
        Event::Evaluated {
            state,
            verdict,
            detail,
            ..
        } => match detail {
            Some(detail) => format!("{state} → {verdict}: {}", first_line(detail, 60)),
            None => format!("{state} → {verdict}"),
        },
        Event::Transitioned { from, to, verdict } => format!("{from} → {to} ({verdict})"),
        Event::RetryScheduled {
            state,
            retry,
            verdict,
            delay_ms,
        } => {
            let mut text = format!("{state} retry {retry} after {verdict}");
            if *delay_ms > 0 {
                text.push_str(&format!(", in {}", duration(*delay_ms)));
            }
            text
        }
        Event::RateLimited {
            state,
            attempt,
            wait_ms,
            resume_at,
            exhausted: false,
            ..
        } => match resume_at {
            Some(at) => format!(
                "{state} attempt {attempt}, waiting {} (until {})",
                duration(*wait_ms),
                &at.to_string()[11..19]
            ),
            None => format!("{state} attempt {attempt}, waiting {}", duration(*wait_ms)),
        },
        Event::RateLimited {
            state,
            attempt,
            evidence,
            ..
        } => format!(
            "{state} still limited after {attempt} waits: {}",
            first_line(evidence, 60)
        ),
        Event::HandoffDetected { state, message, .. } => {
            format!("{state}: {}", first_line(message, 60))
        }
        Event::AgentSession {
            state, session_id, ..
        } => format!("{state} session {session_id}"),
        Event::AgentUnavailable {
            state,
            outcome,
            message,
            ..
        } => format!("{state} {}: {}", outcome.as_str(), first_line(message, 60)),
        Event::RunPaused { reason, message } => match message {
            Some(m) => format!("{}: {}", reason.as_str(), first_line(m, 80)),
            None => reason.as_str().to_owned(),
        },
        Event::RunResumed {
            overrides,
            rerun,
            skip_to,
        } => {
            let mut parts = Vec::new();
            if let Some(n) = overrides.max_steps {
                parts.push(format!("max_steps {n}"));
            }
            if let Some(ms) = overrides.timeout_ms {
                parts.push(format!("timeout {}", duration(ms)));
            }
            for (k, v) in &overrides.context {
                parts.push(format!("{k}={}", first_line(v, 30)));
            }
            if *rerun {
                parts.push("rerun".to_owned());
            }
            if let Some(state) = skip_to {
                parts.push(format!("skip to {state}"));
            }
            parts.join(", ")
        }
        Event::RunCompleted { state } => format!("in {state}"),
        Event::RunFailed { state, error } => match state {
            Some(state) => format!("in {state}: {}", first_line(error, 80)),
            None => first_line(error, 80),
        },
        Event::RunTimedOut { elapsed_ms } => format!("after {}", duration(*elapsed_ms)),
        Event::ScopeWaiting { scope, holder } => {
            format!("{} held by {holder}", scope.join(", "))
        }
        Event::ScopeAcquired { scope } => scope.join(", "),
        Event::DefinitionReloaded { definition_sha256 } => {
            format!(
                "sha256 {}",
                definition_sha256.get(..12).unwrap_or(definition_sha256)
            )
        }
        Event::LogRepaired {
            dropped_bytes,
            reason,
        } => format!("cut {dropped_bytes} bytes: {reason}"),
        Event::SubLoopStarted {
            state,
            child_run_id,
            ..
        } => format!("{state} runs {child_run_id}"),
        Event::SubLoopOf {
            run_id,
            state,
            step,
            depth,
        } => format!("of {run_id} ({state}, step {step}; depth {depth})"),
        Event::ReplayedFrom { run_id } => format!("run {run_id}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use dloop_core::Timestamp;

    use super::*;

    /// Every record type the log can hold, as serde names `Event`'s variants: read from the
    /// error serde gives for an unknown type ("expected one of `run_started`, ..."), so a
    /// variant added to the core is listed here (and accepted by `logs --type`) or this fails.
    fn every_event_type() -> Vec<String> {
        let err = serde_json::from_str::<Event>(r#"{"type":"no such type"}"#)
            .expect_err("not a record type");
        let message = err.to_string();
        let list = message
            .split_once("expected one of ")
            .map(|(_, list)| list)
            .unwrap_or_else(|| panic!("serde's message changed: {message}"));
        list.split(", ")
            .map(|t| {
                t.split('`')
                    .nth(1)
                    .unwrap_or_else(|| panic!("{message}"))
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn every_event_type_is_listed_for_logs_type() {
        let mut all = every_event_type();
        assert!(all.len() >= 29, "{all:?}");
        all.sort();
        let mut listed: Vec<String> = EVENT_TYPES.iter().map(|t| (*t).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, all, "EVENT_TYPES must list every Event variant");
    }

    #[test]
    fn type_width_fits_every_type() {
        let longest = EVENT_TYPES.iter().map(|t| t.len()).max().unwrap_or(0);
        assert_eq!(longest, TYPE_WIDTH);
    }

    #[test]
    fn transition_line() {
        let record = Record {
            seq: 12,
            ts: Timestamp(1_795_170_430_123),
            event: Event::Transitioned {
                from: "check".into(),
                to: "fix".into(),
                verdict: "failure".into(),
            },
        };
        assert_eq!(
            human_line(&record, false),
            "   12  10:27:10.123  transitioned         check → fix (failure)\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&json_line(&record)).expect("a JSON line");
        assert_eq!(json["seq"], 12);
        assert_eq!(json["type"], "transitioned");
        assert!(json.get("crc").is_none());
    }
}
