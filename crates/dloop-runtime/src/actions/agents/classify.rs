//! How an agent invocation ended: from the CLI's terminal event first, then the exit status,
//! then stderr (AGENT_CLIS.md).
//!
//! Invariant: text patterns (rate limit, authentication, network, context) are only ever
//! matched against a *failed* invocation's error message and stderr, never against a
//! successful run's output: an answer saying "I added a rate limit of 429 requests" is a
//! success, and a limit taken for a success would let loops "complete" having done nothing.

mod patterns;
mod reset;

use dloop_core::Timestamp;
use dloop_core::config::Base;
use dloop_core::event::{ActionTimeout, AgentOutcome};

pub use self::patterns::Patterns;
pub use self::reset::{now, reset_from_text};
use super::stream::StreamFacts;
use crate::process::ProcessEnd;

/// A classified invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// How it ended.
    pub outcome: AgentOutcome,
    /// The CLI's own message (failures), for the user.
    pub message: Option<String>,
    /// When a rate limit resets, if known.
    pub resets_at: Option<Timestamp>,
}

/// How the process ended, for [`classify`]; `None` fields when unknown (a kept stream).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessFacts {
    /// Whether a stop request ended it.
    pub stopped: bool,
    /// Which time limit ended it.
    pub timed_out: Option<ActionTimeout>,
    /// Its exit code.
    pub exit_code: Option<i32>,
    /// Whether it exited at all (false: a signal, or it never started).
    pub exited: bool,
}

impl From<&ProcessEnd> for ProcessFacts {
    fn from(end: &ProcessEnd) -> Self {
        Self {
            stopped: end.stopped,
            timed_out: end.timed_out,
            exit_code: end.exit_code(),
            exited: end.exit_code().is_some(),
        }
    }
}

/// Classifies one invocation of an agent CLI (not `command`: [`classify_command`]).
pub fn classify(
    base: Base,
    facts: &StreamFacts,
    process: ProcessFacts,
    stderr: &str,
    patterns: &Patterns,
    now: Timestamp,
) -> Verdict {
    let resets = |text: &str| facts.resets_at.or_else(|| reset_from_text(text, now));
    if process.stopped {
        return verdict(
            AgentOutcome::Interrupted,
            Some("stopped by dloop".into()),
            None,
        );
    }
    if let Some(terminal) = &facts.terminal {
        if !terminal.is_error {
            return verdict(AgentOutcome::Success, None, None);
        }
        let message = terminal
            .message
            .clone()
            .or_else(|| facts.last_error.clone())
            .or_else(|| nonempty(stderr));
        let text = format!("{}\n{stderr}", message.as_deref().unwrap_or(""));
        let outcome = terminal
            .kind
            .or_else(|| patterns.classify_text(&text))
            .unwrap_or(AgentOutcome::Failure);
        let resets_at = (outcome == AgentOutcome::RateLimited)
            .then(|| resets(&text))
            .flatten();
        return verdict(outcome, message, resets_at);
    }
    // No terminal event: the CLI crashed, was killed, hung, or failed before its stream began.
    if let Some(limit) = process.timed_out {
        if base == Base::Opencode && limit == ActionTimeout::Idle {
            // OpenCode retries 429s silently and without a cap (AGENT_CLIS.md 4): silence
            // there is a probable rate limit.
            return verdict(
                AgentOutcome::RateLimited,
                Some(
                    "no output until the idle timeout: opencode retries rate limits silently"
                        .into(),
                ),
                None,
            );
        }
        // A CLI that retries its service forever (codex offline prints "Reconnecting... waiting
        // for network" until killed) says why in its last error event: a network, limit or
        // login message makes the run pause as such (resumable) rather than fail as a hang.
        if let Some(last) = &facts.last_error
            && let Some(
                outcome @ (AgentOutcome::Unreachable
                | AgentOutcome::RateLimited
                | AgentOutcome::AuthFailed),
            ) = patterns.classify_text(last)
        {
            let resets_at = (outcome == AgentOutcome::RateLimited)
                .then(|| resets(last))
                .flatten();
            return verdict(
                outcome,
                Some(format!(
                    "{last} (ended by its {} time limit)",
                    timeout_name(limit)
                )),
                resets_at,
            );
        }
        return verdict(
            AgentOutcome::NoTerminalEvent,
            Some(format!("ended by its {} time limit", timeout_name(limit))),
            None,
        );
    }
    let code = process.exit_code;
    if base == Base::Gemini {
        // Gemini's documented exit codes (AGENT_CLIS.md 3).
        match code {
            Some(41) => return verdict(AgentOutcome::AuthFailed, nonempty(stderr), None),
            Some(130) => return verdict(AgentOutcome::Interrupted, nonempty(stderr), None),
            _ => {}
        }
    }
    if code == Some(130) {
        return verdict(AgentOutcome::Interrupted, nonempty(stderr), None);
    }
    let message = facts.last_error.clone().or_else(|| nonempty(stderr));
    if process.exited && code != Some(0) {
        let text = format!("{}\n{stderr}", facts.last_error.as_deref().unwrap_or(""));
        if let Some(outcome) = patterns.classify_text(&text) {
            let resets_at = (outcome == AgentOutcome::RateLimited)
                .then(|| resets(&text))
                .flatten();
            return verdict(outcome, message, resets_at);
        }
        if facts.session_id.is_none() {
            // It failed before its stream began (a bad flag, a missing program): an error,
            // not a crash mid-stream.
            return verdict(AgentOutcome::Failure, message, None);
        }
    }
    verdict(AgentOutcome::NoTerminalEvent, message, None)
}

/// Classifies a `command` profile's invocation: the exit status says it all, and a failure's
/// output is checked for the text patterns.
pub fn classify_command(
    process: ProcessFacts,
    output_tail: &str,
    patterns: &Patterns,
    now: Timestamp,
) -> Verdict {
    if process.stopped {
        return verdict(
            AgentOutcome::Interrupted,
            Some("stopped by dloop".into()),
            None,
        );
    }
    if let Some(limit) = process.timed_out {
        return verdict(
            AgentOutcome::Failure,
            Some(format!("ended by its {} time limit", timeout_name(limit))),
            None,
        );
    }
    match process.exit_code {
        Some(0) => verdict(AgentOutcome::Success, None, None),
        Some(130) => verdict(AgentOutcome::Interrupted, nonempty(output_tail), None),
        code => {
            let message = nonempty(output_tail).or_else(|| {
                Some(code.map_or("killed by a signal".into(), |c| format!("exit status {c}")))
            });
            let outcome = patterns
                .classify_text(output_tail)
                .unwrap_or(AgentOutcome::Failure);
            let resets_at = (outcome == AgentOutcome::RateLimited)
                .then(|| reset_from_text(output_tail, now))
                .flatten();
            verdict(outcome, message, resets_at)
        }
    }
}

fn verdict(
    outcome: AgentOutcome,
    message: Option<String>,
    resets_at: Option<Timestamp>,
) -> Verdict {
    Verdict {
        outcome,
        message,
        resets_at,
    }
}

fn nonempty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| super::stream::shorten(text, 4000))
}

fn timeout_name(limit: ActionTimeout) -> &'static str {
    match limit {
        ActionTimeout::Wall => "wall-clock",
        ActionTimeout::Idle => "idle",
        ActionTimeout::Run => "run",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::agents::stream::Terminal;

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    fn failed_with(message: &str) -> StreamFacts {
        StreamFacts {
            session_id: Some("s".into()),
            terminal: Some(Terminal {
                is_error: true,
                kind: None,
                message: Some(message.into()),
            }),
            ..StreamFacts::default()
        }
    }

    fn exited(code: i32) -> ProcessFacts {
        ProcessFacts {
            exit_code: Some(code),
            exited: true,
            ..ProcessFacts::default()
        }
    }

    #[test]
    fn failure_texts_are_classified_by_kind() {
        let patterns = Patterns::new(&[]);
        let table: &[(&str, AgentOutcome)] = &[
            (
                "You've hit your session limit · resets 3:45pm",
                AgentOutcome::RateLimited,
            ),
            (
                "You've hit your limit · resets 3pm (Europe/Berlin)",
                AgentOutcome::RateLimited,
            ),
            ("API Error: Rate limit reached", AgentOutcome::RateLimited),
            (
                "exceeded retry limit, last status: 429 Too Many Requests",
                AgentOutcome::RateLimited,
            ),
            (
                "You've hit your usage limit. Visit https://chatgpt.com/codex/settings/usage to purchase more credits or try again at 3:28 PM.",
                AgentOutcome::RateLimited,
            ),
            (
                "Quota exceeded. Check your plan and billing details.",
                AgentOutcome::RateLimited,
            ),
            (
                "[API Error: You have exhausted your capacity on this model.]",
                AgentOutcome::RateLimited,
            ),
            ("RESOURCE_EXHAUSTED", AgentOutcome::RateLimited),
            (
                "Invalid API key · Please run /login",
                AgentOutcome::AuthFailed,
            ),
            (
                "Not logged in · Please run /login",
                AgentOutcome::AuthFailed,
            ),
            ("Workspace out of credits", AgentOutcome::AuthFailed),
            ("Credit balance is too low", AgentOutcome::AuthFailed),
            (
                "API Error: Connection error. (ENOTFOUND api.anthropic.com)",
                AgentOutcome::Unreachable,
            ),
            (
                "stream disconnected before completion: error sending request",
                AgentOutcome::Unreachable,
            ),
            ("Prompt is too long", AgentOutcome::ContextLimit),
            ("the tool crashed", AgentOutcome::Failure),
        ];
        for (text, want) in table {
            let got = classify(
                Base::Claude,
                &failed_with(text),
                exited(1),
                "",
                &patterns,
                NOW,
            );
            assert_eq!(got.outcome, *want, "{text}");
            assert_eq!(got.message.as_deref(), Some(*text));
        }
    }

    #[test]
    fn a_successful_answer_that_mentions_limits_is_a_success() {
        let patterns = Patterns::new(&[]);
        let facts = StreamFacts {
            final_text: Some(
                "I added a rate limit of 429 requests; quota and usage limit docs updated".into(),
            ),
            terminal: Some(Terminal {
                is_error: false,
                kind: None,
                message: None,
            }),
            ..StreamFacts::default()
        };
        // Even with a non-zero exit and limit text on stderr: the terminal event says success.
        let got = classify(
            Base::Codex,
            &facts,
            exited(1),
            "429 rate limit",
            &patterns,
            NOW,
        );
        assert_eq!(got.outcome, AgentOutcome::Success);
        let got = classify_command(exited(0), "rate limit 429 quota", &patterns, NOW);
        assert_eq!(got.outcome, AgentOutcome::Success);
    }

    #[test]
    fn structure_wins_over_text_and_stops_are_interruptions() {
        let patterns = Patterns::new(&[]);
        let mut facts = failed_with("Invalid API key");
        facts.terminal.as_mut().expect("terminal").kind = Some(AgentOutcome::RateLimited);
        let got = classify(Base::Claude, &facts, exited(1), "", &patterns, NOW);
        assert_eq!(got.outcome, AgentOutcome::RateLimited);
        let stopped = ProcessFacts {
            stopped: true,
            ..ProcessFacts::default()
        };
        let got = classify(Base::Claude, &facts, stopped, "", &patterns, NOW);
        assert_eq!(got.outcome, AgentOutcome::Interrupted);
    }

    #[test]
    fn without_a_terminal_event_the_exit_status_then_stderr_decide() {
        let patterns = Patterns::new(&[]);
        let started = StreamFacts {
            session_id: Some("s".into()),
            ..StreamFacts::default()
        };
        let none = StreamFacts::default();
        let case = |facts: &StreamFacts, p: ProcessFacts, stderr: &str, base: Base| {
            classify(base, facts, p, stderr, &patterns, NOW).outcome
        };
        assert_eq!(
            case(
                &started,
                exited(1),
                "fake agent: simulated crash",
                Base::Claude
            ),
            AgentOutcome::NoTerminalEvent
        );
        assert_eq!(
            case(&started, exited(0), "", Base::Codex),
            AgentOutcome::NoTerminalEvent
        );
        assert_eq!(
            case(
                &none,
                exited(2),
                "error: unexpected argument '--x' found",
                Base::Codex
            ),
            AgentOutcome::Failure
        );
        assert_eq!(
            case(&none, exited(1), "Error: Invalid API key", Base::Codex),
            AgentOutcome::AuthFailed
        );
        assert_eq!(
            case(
                &none,
                exited(1),
                "getaddrinfo ENOTFOUND api.openai.com",
                Base::Codex
            ),
            AgentOutcome::Unreachable
        );
        assert_eq!(
            case(&none, exited(41), "", Base::Gemini),
            AgentOutcome::AuthFailed
        );
        assert_eq!(
            case(&none, exited(130), "", Base::Claude),
            AgentOutcome::Interrupted
        );
        let idle = ProcessFacts {
            timed_out: Some(ActionTimeout::Idle),
            exited: false,
            ..ProcessFacts::default()
        };
        assert_eq!(
            case(&started, idle, "", Base::Opencode),
            AgentOutcome::RateLimited
        );
        assert_eq!(
            case(&started, idle, "", Base::Claude),
            AgentOutcome::NoTerminalEvent
        );
    }

    #[test]
    fn a_cli_that_retries_its_service_until_killed_says_why_in_its_last_error() {
        // Codex offline (seen with the real CLI, 0.15x): `error` events "Reconnecting... waiting
        // for network" until dloop's timeout ends it.
        let patterns = Patterns::new(&[]);
        let wall = ProcessFacts {
            timed_out: Some(ActionTimeout::Wall),
            exited: false,
            ..ProcessFacts::default()
        };
        let offline = StreamFacts {
            session_id: Some("s".into()),
            last_error: Some(
                "Reconnecting... waiting for network (Connection failed: error sending request)"
                    .into(),
            ),
            ..StreamFacts::default()
        };
        let verdict = classify(Base::Codex, &offline, wall, "", &patterns, NOW);
        assert_eq!(verdict.outcome, AgentOutcome::Unreachable);
        let message = verdict.message.expect("message");
        assert!(message.contains("waiting for network"), "{message}");
        assert!(message.contains("time limit"), "{message}");
        // Any other last error stays a hang.
        let other = StreamFacts {
            last_error: Some("tool exec failed: exit 2".into()),
            ..offline
        };
        assert_eq!(
            classify(Base::Codex, &other, wall, "", &patterns, NOW).outcome,
            AgentOutcome::NoTerminalEvent
        );
    }

    #[test]
    fn reset_times_are_read_when_unambiguous() {
        assert_eq!(
            reset_from_text("Claude AI usage limit reached|1788350400", NOW),
            Some(Timestamp::from_millis(1_788_350_400_000))
        );
        assert_eq!(
            reset_from_text("Your quota will reset after 19h14m47s.", NOW),
            Some(Timestamp::from_millis(
                1_000_000 + (19 * 3600 + 14 * 60 + 47) * 1000
            ))
        );
        assert_eq!(
            reset_from_text("Please retry in 44.09s.", NOW),
            Some(Timestamp::from_millis(1_000_000 + 44_090))
        );
        assert_eq!(reset_from_text("try again at 3:28 PM", NOW), None);
        let patterns = Patterns::new(&[]);
        let got = classify(
            Base::Gemini,
            &failed_with("Your quota will reset after 1m."),
            exited(1),
            "",
            &patterns,
            NOW,
        );
        assert_eq!(got.resets_at, Some(Timestamp::from_millis(1_060_000)));
    }
}
