//! OpenCode's `opencode run --format json` stream (AGENT_CLIS.md 4).
//!
//! Where things are: the session id in `sessionID` on every line, the final answer in the last
//! `text` part, usage and cost summed over `step_finish` parts (reasoning tokens counted as
//! output), a turn per `step_start`. The end: `done` (the session went idle), or an `error`
//! line (then exit 1). A `step_finish` with reason `stop` already means the answer is complete,
//! which covers versions that print no `done`; an `error` after it still wins.

use std::borrow::Cow;

use dloop_core::event::{AgentOutcome, TokenUsage};
use serde::Deserialize;

use super::stream::{
    ACTIVITY_TEXT, StreamFacts, StreamParser, Terminal, first_argument, line_type, parse, shorten,
    sum,
};
use crate::actions::AgentActivity;

/// Parses an OpenCode stream.
#[derive(Debug, Default)]
pub(crate) struct OpencodeParser {
    facts: StreamFacts,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "sessionID", borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default)]
    part: Option<Part>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    state: Option<ToolState>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    cost: Option<f64>,
    #[serde(default)]
    tokens: Option<Tokens>,
}

#[derive(Deserialize)]
struct ToolState {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    input: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Tokens {
    #[serde(default)]
    input: u64,
    #[serde(default)]
    output: u64,
    #[serde(default)]
    reasoning: u64,
    #[serde(default)]
    cache: Cache,
}

#[derive(Deserialize, Default)]
struct Cache {
    #[serde(default)]
    read: u64,
    #[serde(default)]
    write: u64,
}

/// `error{name, data{message, statusCode}}`, or the v2 rewrite's `error{type, message}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    message: Option<String>,
    #[serde(rename = "statusCode", default)]
    status_code: Option<u16>,
}

impl OpencodeParser {
    fn error(&mut self, e: ErrorBody, activity: &mut dyn FnMut(AgentActivity)) {
        let name = e.name.or(e.kind);
        let status = e.data.as_ref().and_then(|d| d.status_code);
        let message = e
            .data
            .and_then(|d| d.message)
            .or(e.message)
            .or_else(|| name.clone());
        let kind = match (status, name.as_deref()) {
            (Some(429), _) => Some(AgentOutcome::RateLimited),
            (Some(401 | 403), _) | (_, Some("ProviderAuthError")) => Some(AgentOutcome::AuthFailed),
            (_, Some("ContextOverflowError")) => Some(AgentOutcome::ContextLimit),
            (_, Some("MessageAbortedError")) => Some(AgentOutcome::Interrupted),
            (Some(500..=599), _) => Some(AgentOutcome::Unreachable),
            _ => None,
        };
        if let Some(m) = &message {
            activity(AgentActivity::Error(shorten(m, ACTIVITY_TEXT)));
            self.facts.last_error = Some(m.clone());
        }
        self.facts.terminal = Some(Terminal {
            is_error: true,
            kind,
            message,
        });
    }

    fn succeed(&mut self) {
        if !self.facts.terminal.as_ref().is_some_and(|t| t.is_error) {
            self.facts.terminal = Some(Terminal {
                is_error: false,
                kind: None,
                message: None,
            });
        }
    }
}

impl StreamParser for OpencodeParser {
    fn line(&mut self, line: &[u8], activity: &mut dyn FnMut(AgentActivity)) {
        let Some(kind) = line_type(line) else {
            return;
        };
        if kind == "done" {
            self.succeed();
            return;
        }
        let Some(l) = parse::<Line<'_>>(line) else {
            return;
        };
        if let Some(id) = l.session_id.filter(|id| !id.is_empty())
            && self.facts.session_id.as_deref() != Some(&id)
        {
            self.facts.session_id = Some(id.into_owned());
            activity(AgentActivity::Started {
                model: None,
                session_id: self.facts.session_id.clone(),
            });
        }
        match (kind.as_ref(), l.part) {
            ("step_start", _) => self.facts.turns += 1,
            ("text", Some(part)) => {
                let text = part.text.unwrap_or_default();
                activity(AgentActivity::Text(text.clone()));
                self.facts.final_text = Some(text);
            }
            ("tool_use", Some(part)) => {
                let state = part.state;
                let input = state.as_ref().and_then(|s| s.input.as_ref());
                activity(AgentActivity::Tool {
                    name: part.tool.unwrap_or_default(),
                    detail: input.map(first_argument).unwrap_or_default(),
                });
                if let Some(s) = state
                    && s.status.as_deref() == Some("error")
                {
                    let error = s
                        .error
                        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned));
                    activity(AgentActivity::Error(shorten(
                        &error.unwrap_or_default(),
                        ACTIVITY_TEXT,
                    )));
                }
            }
            ("step_finish", Some(part)) => {
                let t = part.tokens.unwrap_or_default();
                let step = TokenUsage {
                    input: t.input,
                    output: t.output + t.reasoning,
                    cached: t.cache.read,
                    cache_write: t.cache.write,
                };
                self.facts.tokens = sum(self.facts.tokens, step);
                if let Some(cost) = part.cost {
                    self.facts.cost_usd = Some(self.facts.cost_usd.unwrap_or(0.0) + cost);
                }
                if part.reason.as_deref() == Some("stop") {
                    self.succeed();
                }
            }
            ("error", _) => {
                if let Some(e) = l.error {
                    self.error(e, activity);
                }
            }
            _ => {}
        }
    }

    fn facts(&self) -> &StreamFacts {
        &self.facts
    }
}
