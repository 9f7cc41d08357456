//! What every stream parser shares: the facts it gathers ([`StreamFacts`]), the per-line
//! [`StreamParser`] trait, and a fast way to read a JSON line's `type`.
//!
//! Invariants: a parser is fed one line at a time and never buffers lines (memory stays flat
//! however long the stream is); a line that is blank, not JSON, or of an unknown type changes
//! nothing (AGENT_CLIS.md: ignore unknown types and fields, skip non-JSON lines); the facts
//! only move forward (the latest session id, the latest terminal event).

use std::borrow::Cow;

use dloop_core::Timestamp;
use dloop_core::event::{AgentOutcome, TokenUsage};
use serde::Deserialize;

use crate::actions::AgentActivity;

/// The longest activity text (a tool's argument, an error) handed to watchers, in bytes.
pub(crate) const ACTIVITY_TEXT: usize = 400;

/// The CLI's terminal event, as its parser read it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Terminal {
    /// Whether the CLI says the invocation failed.
    pub is_error: bool,
    /// What the structure of the event says the failure is (`None`: only its text can tell).
    pub kind: Option<AgentOutcome>,
    /// The CLI's error message.
    pub message: Option<String>,
}

/// What a parser has read so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StreamFacts {
    /// The latest session id the stream named.
    pub session_id: Option<String>,
    /// The model that answered.
    pub model: Option<String>,
    /// The final answer.
    pub final_text: Option<String>,
    /// Turns counted in the stream (model round trips), for the turn cap.
    pub turns: u64,
    /// Turns as the CLI reports them, when it does.
    pub reported_turns: Option<u64>,
    /// Token use: this invocation's, except for codex (the thread's running total, turned into
    /// a delta by the runner).
    pub tokens: TokenUsage,
    /// Cost in US dollars.
    pub cost_usd: Option<f64>,
    /// The terminal event, once seen.
    pub terminal: Option<Terminal>,
    /// When a rate limit resets, if the stream said.
    pub resets_at: Option<Timestamp>,
    /// The last non-terminal error the stream reported (for classifying a stream that ends
    /// without a terminal event).
    pub last_error: Option<String>,
}

/// Reads one CLI's stream, line by line.
pub(crate) trait StreamParser: Send {
    /// Reads one line of stdout (without its newline), reporting what it shows to `activity`.
    fn line(&mut self, line: &[u8], activity: &mut dyn FnMut(AgentActivity));

    /// Ends the stream (a parser that keeps a pending line, like `command`'s, completes it).
    fn finish(&mut self) {}

    /// What has been read so far.
    fn facts(&self) -> &StreamFacts;
}

/// A line's `type`, or `None` for a line that is not a JSON object with one.
///
/// The four CLIs write `type` first (`{"type":"assistant",...`), so that prefix is read
/// without parsing; any other object is parsed for its `type` alone.
pub(crate) fn line_type(line: &[u8]) -> Option<Cow<'_, str>> {
    let line = trim(line);
    if !line.starts_with(b"{") {
        return None;
    }
    const PREFIX: &[u8] = b"{\"type\":\"";
    if let Some(rest) = line.strip_prefix(PREFIX)
        && let Some(end) = rest.iter().position(|b| *b == b'"' || *b == b'\\')
        && rest[end] == b'"'
    {
        return std::str::from_utf8(&rest[..end]).ok().map(Cow::Borrowed);
    }
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
    }
    serde_json::from_slice::<Head<'_>>(line)
        .ok()
        .map(|h| h.kind)
}

/// `line` without surrounding ASCII whitespace (a `\r` of a CRLF stream).
pub(crate) fn trim(line: &[u8]) -> &[u8] {
    line.trim_ascii()
}

/// Parses `line` as `T`, or `None` (a line of a known type but an unexpected shape is skipped
/// like a non-JSON one).
pub(crate) fn parse<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Option<T> {
    serde_json::from_slice(trim(line)).ok()
}

/// Field-wise sum of token counts.
pub(crate) fn sum(a: TokenUsage, b: TokenUsage) -> TokenUsage {
    TokenUsage {
        input: a.input + b.input,
        output: a.output + b.output,
        cached: a.cached + b.cached,
        cache_write: a.cache_write + b.cache_write,
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The first argument of a tool call, as watchers show it: the command, path, pattern or URL
/// when the input names one, else its first string value.
pub(crate) fn first_argument(input: &serde_json::Value) -> String {
    const KEYS: [&str; 8] = [
        "command",
        "file_path",
        "path",
        "filePath",
        "pattern",
        "url",
        "query",
        "description",
    ];
    let text = match input {
        serde_json::Value::Object(map) => KEYS
            .iter()
            .find_map(|k| map.get(*k).and_then(value_text))
            .or_else(|| map.values().find_map(value_text))
            .unwrap_or_default(),
        other => value_text(other).unwrap_or_default(),
    };
    shorten(&text, ACTIVITY_TEXT)
}

fn value_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => {
            // codex's command can be an argv list.
            let words: Vec<&str> = items.iter().filter_map(|i| i.as_str()).collect();
            (!words.is_empty()).then(|| words.join(" "))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_is_read_fast_or_parsed_and_non_json_is_none() {
        assert_eq!(
            line_type(br#"{"type":"result","x":1}"#).as_deref(),
            Some("result")
        );
        assert_eq!(
            line_type(br#" {"x":1,"type":"item.completed"}"#).as_deref(),
            Some("item.completed")
        );
        assert_eq!(line_type(br#"{"type":"a\"b"}"#).as_deref(), Some("a\"b"));
        assert_eq!(line_type(b"Reading prompt from stdin..."), None);
        assert_eq!(line_type(b""), None);
        assert_eq!(line_type(br#"{"x":1}"#), None);
    }

    #[test]
    fn shorten_cuts_on_a_character_boundary() {
        assert_eq!(shorten("héllo", 2), "h…");
        assert_eq!(shorten(" ok ", 10), "ok");
    }

    #[test]
    fn first_argument_prefers_the_command_or_path() {
        let v = serde_json::json!({"description": "Run", "command": "cargo test"});
        assert_eq!(first_argument(&v), "cargo test");
        let v = serde_json::json!({"content": "x", "file_path": "src/lib.rs"});
        assert_eq!(first_argument(&v), "src/lib.rs");
        let v = serde_json::json!({"other": "first"});
        assert_eq!(first_argument(&v), "first");
        let v = serde_json::json!({"command": ["bash", "-lc", "ls"]});
        assert_eq!(first_argument(&v), "bash -lc ls");
    }
}
