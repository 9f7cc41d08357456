//! Gemini CLI's `--output-format stream-json` stream (AGENT_CLIS.md 3).
//!
//! Where things are: the session id and requested model in `init`, the final answer in the
//! assistant `message` deltas after the last tool result (concatenated), usage in
//! `result.stats` (`input` + `cached` split `input_tokens`; `models` names the model that ran,
//! as `auto` may fall back). No cost.
//!
//! Turns: a model round trip starts with the first assistant message or tool call after the
//! prompt or a tool result.

use std::borrow::Cow;

use dloop_core::event::{AgentOutcome, TokenUsage};
use indexmap::IndexMap;
use serde::Deserialize;

use super::stream::{
    ACTIVITY_TEXT, StreamFacts, StreamParser, Terminal, first_argument, line_type, parse, shorten,
};
use crate::actions::AgentActivity;

/// Parses a Gemini stream.
#[derive(Debug, Default)]
pub(crate) struct GeminiParser {
    facts: StreamFacts,
    /// Assistant text since the last tool call or result.
    answer: String,
    /// Whether the model is producing (a message or tool call) since the last tool result.
    in_model_turn: bool,
}

#[derive(Deserialize)]
struct Init<'a> {
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ToolUse {
    #[serde(default)]
    tool_name: String,
    #[serde(default)]
    parameters: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ToolResult {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorLine {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ResultLine {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<ErrorBody>,
    #[serde(default)]
    stats: Option<Stats>,
}

#[derive(Deserialize, Default)]
struct Stats {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cached: u64,
    #[serde(default)]
    input: Option<u64>,
    #[serde(default)]
    models: IndexMap<String, ModelStats>,
}

#[derive(Deserialize, Default)]
struct ModelStats {
    #[serde(default)]
    total_tokens: u64,
}

impl GeminiParser {
    fn model_turn(&mut self) {
        if !self.in_model_turn {
            self.in_model_turn = true;
            self.facts.turns += 1;
        }
    }

    fn flush_answer(&mut self, activity: &mut dyn FnMut(AgentActivity)) {
        if !self.answer.is_empty() {
            activity(AgentActivity::Text(std::mem::take(&mut self.answer)));
        }
    }

    fn result(&mut self, r: ResultLine, activity: &mut dyn FnMut(AgentActivity)) {
        let final_text = self.answer.clone();
        self.flush_answer(activity);
        if let Some(stats) = r.stats {
            let input = stats
                .input
                .unwrap_or_else(|| stats.input_tokens.saturating_sub(stats.cached));
            self.facts.tokens = TokenUsage {
                input,
                output: stats.output_tokens,
                cached: stats.cached,
                cache_write: 0,
            };
            if let Some((model, _)) = stats.models.iter().max_by_key(|(_, m)| m.total_tokens) {
                self.facts.model = Some(model.clone());
            }
        }
        self.facts.reported_turns = Some(self.facts.turns);
        if r.status.as_deref() == Some("error") {
            let error = r.error.unwrap_or(ErrorBody {
                kind: None,
                message: None,
            });
            // Gemini names its fatal errors by class (`FatalAuthenticationError`, ...); API
            // errors, quota included, come as `unknown`: their text decides.
            let kind = match error.kind.as_deref() {
                Some(k) if k.contains("Authentication") => Some(AgentOutcome::AuthFailed),
                Some(k) if k.contains("TurnLimited") => Some(AgentOutcome::Failure),
                Some(k) if k.contains("Cancelled") => Some(AgentOutcome::Interrupted),
                _ => None,
            };
            let message = error.message.or_else(|| self.facts.last_error.clone());
            if let Some(m) = &message {
                activity(AgentActivity::Error(shorten(m, ACTIVITY_TEXT)));
            }
            self.facts.terminal = Some(Terminal {
                is_error: true,
                kind,
                message,
            });
        } else {
            self.facts.final_text = Some(final_text);
            self.facts.terminal = Some(Terminal {
                is_error: false,
                kind: None,
                message: None,
            });
        }
    }
}

impl StreamParser for GeminiParser {
    fn line(&mut self, line: &[u8], activity: &mut dyn FnMut(AgentActivity)) {
        let Some(kind) = line_type(line) else {
            return;
        };
        match kind.as_ref() {
            "init" => {
                if let Some(i) = parse::<Init<'_>>(line) {
                    if let Some(id) = i.session_id {
                        self.facts.session_id = Some(id.into_owned());
                    }
                    if let Some(model) = i.model {
                        self.facts.model = Some(model.into_owned());
                    }
                    activity(AgentActivity::Started {
                        model: self.facts.model.clone(),
                        session_id: self.facts.session_id.clone(),
                    });
                }
            }
            "message" => {
                if let Some(m) = parse::<Message<'_>>(line)
                    && m.role.as_deref() == Some("assistant")
                {
                    self.model_turn();
                    self.answer
                        .push_str(m.content.as_deref().unwrap_or_default());
                }
            }
            "tool_use" => {
                if let Some(t) = parse::<ToolUse>(line) {
                    self.model_turn();
                    self.flush_answer(activity);
                    activity(AgentActivity::Tool {
                        name: t.tool_name,
                        detail: t
                            .parameters
                            .as_ref()
                            .map(first_argument)
                            .unwrap_or_default(),
                    });
                }
            }
            "tool_result" => {
                if let Some(t) = parse::<ToolResult>(line) {
                    self.in_model_turn = false;
                    self.answer.clear();
                    if t.status.as_deref() == Some("error") {
                        let message = t.error.and_then(|e| e.message).unwrap_or_default();
                        activity(AgentActivity::Error(shorten(&message, ACTIVITY_TEXT)));
                    }
                }
            }
            "error" => {
                if let Some(e) = parse::<ErrorLine>(line) {
                    activity(AgentActivity::Error(shorten(&e.message, ACTIVITY_TEXT)));
                    self.facts.last_error = Some(e.message);
                }
            }
            "result" => {
                if let Some(r) = parse::<ResultLine>(line) {
                    self.result(r, activity);
                }
            }
            _ => {}
        }
    }

    fn facts(&self) -> &StreamFacts {
        &self.facts
    }
}
