//! How an agent's activity reads on a terminal: one compact line per event (assistant text,
//! each tool call with its first argument, errors, the end), or the whole text with `-v`. Used
//! live under a step's line by `dloop run` and for a kept transcript by `dloop output`.
//!
//! Everything shown is the agent's own text, so control characters are dropped (they could move
//! the cursor or rewrite the screen) and compact lines are cut to the terminal's width.

use dloop_runtime::actions::AgentActivity;

use crate::render::Paint;
use crate::render::progress::fit;

/// The lines `activity` shows as: one cut to `width` columns, or (`whole`) every line of it.
pub(crate) fn lines(
    activity: &AgentActivity,
    whole: bool,
    width: usize,
    color: bool,
) -> Vec<String> {
    let (mark, text) = match activity {
        AgentActivity::Started { model, session_id } => {
            let mut parts = Vec::new();
            if let Some(model) = model {
                parts.push(format!("model {model}"));
            }
            if let Some(id) = session_id {
                parts.push(format!("session {id}"));
            }
            if parts.is_empty() {
                return Vec::new();
            }
            (Paint::Dim.apply(color, "◦"), parts.join(", "))
        }
        AgentActivity::Text(text) => ("✎".to_owned(), text.clone()),
        AgentActivity::Tool { name, detail } => (
            Paint::Bold.apply(color, "⚙"),
            if detail.is_empty() {
                name.clone()
            } else {
                format!("{name} {detail}")
            },
        ),
        AgentActivity::Error(text) => (Paint::Red.apply(color, "✗"), text.clone()),
        AgentActivity::Finished { outcome, summary } => (
            Paint::Dim.apply(color, "■"),
            format!("{}: {summary}", outcome.as_str()),
        ),
    };
    let clean: Vec<String> = text
        .lines()
        .map(|line| line.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|line| !line.trim().is_empty())
        .collect();
    if clean.is_empty() {
        return Vec::new();
    }
    if whole {
        return clean
            .iter()
            .enumerate()
            .map(|(i, line)| {
                if i == 0 {
                    format!("{mark} {line}")
                } else {
                    format!("  {line}")
                }
            })
            .collect();
    }
    let first = clean.join(" ⏎ ");
    // The mark is one column wide, plus its space.
    vec![format!("{mark} {}", fit(&first, width.saturating_sub(2)))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use dloop_core::event::AgentOutcome;

    #[test]
    fn compact_lines_are_one_line_cut_to_the_width() {
        let tool = AgentActivity::Tool {
            name: "Bash".into(),
            detail: "cargo test --workspace".into(),
        };
        assert_eq!(
            lines(&tool, false, 80, false),
            vec!["⚙ Bash cargo test --workspace"]
        );
        assert_eq!(lines(&tool, false, 12, false), vec!["⚙ Bash carg…"]);
        let text = AgentActivity::Text("first\nsecond\x1b[2J".into());
        assert_eq!(lines(&text, false, 80, false), vec!["✎ first ⏎ second[2J"]);
        assert_eq!(
            lines(&text, true, 80, false),
            vec!["✎ first", "  second[2J"]
        );
    }

    #[test]
    fn the_end_and_errors_say_what_happened() {
        let done = AgentActivity::Finished {
            outcome: AgentOutcome::RateLimited,
            summary: "You've hit your session limit".into(),
        };
        assert_eq!(
            lines(&done, false, 80, false),
            vec!["■ rate_limited: You've hit your session limit"]
        );
        let started = AgentActivity::Started {
            model: None,
            session_id: None,
        };
        assert!(lines(&started, false, 80, false).is_empty());
    }
}
