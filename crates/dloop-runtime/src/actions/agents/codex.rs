//! Codex's `codex exec --json` stream (AGENT_CLIS.md 2).
//!
//! Where things are: the session id in `thread.started.thread_id` (the same id on resume), the
//! final answer in the last completed `agent_message` item, usage in `turn.completed.usage`,
//! which is the *thread's* running total: a resumed thread's includes its earlier runs, so the
//! runner subtracts what the thread's previous invocation reported (see `super::usage`). No
//! cost, and the model only when an `error` item says it was rerouted.
//!
//! Turns: codex reports none. For the cap, each tool call item (command, file change, MCP
//! tool, web search) counts as one model round trip as it starts, and the final answer as one
//! more: close to how Claude counts `num_turns`.

use std::borrow::Cow;
use std::collections::HashSet;

use dloop_core::event::TokenUsage;
use serde::Deserialize;

use super::stream::{
    ACTIVITY_TEXT, StreamFacts, StreamParser, Terminal, first_argument, line_type, parse, shorten,
};
use crate::actions::AgentActivity;

/// Parses a Codex stream.
#[derive(Debug, Default)]
pub(crate) struct CodexParser {
    facts: StreamFacts,
    /// Tool items started and not yet completed (their activity is already reported).
    open_items: HashSet<String>,
}

#[derive(Deserialize)]
struct ThreadStarted<'a> {
    #[serde(borrow)]
    thread_id: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ItemLine {
    item: Item,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    command: Option<serde_json::Value>,
    #[serde(default)]
    changes: Vec<Change>,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    arguments: Option<serde_json::Value>,
    #[serde(default)]
    query: Option<String>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct TurnCompleted {
    #[serde(default)]
    usage: Usage,
}

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    cached_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(Deserialize)]
struct Failed {
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ErrorLine {
    #[serde(default)]
    message: String,
}

const TOOL_ITEMS: [&str; 4] = [
    "command_execution",
    "file_change",
    "mcp_tool_call",
    "web_search",
];

impl CodexParser {
    fn tool_activity(item: &Item) -> AgentActivity {
        let detail = match item.kind.as_str() {
            "command_execution" => item.command.as_ref().map(first_argument),
            "file_change" => Some(
                item.changes
                    .iter()
                    .map(|c| c.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            "mcp_tool_call" => item.arguments.as_ref().map(first_argument),
            "web_search" => item.query.clone(),
            _ => None,
        };
        let name = match (&item.server, &item.tool) {
            (Some(server), Some(tool)) => format!("{server}.{tool}"),
            _ => item.kind.clone(),
        };
        AgentActivity::Tool {
            name,
            detail: shorten(&detail.unwrap_or_default(), ACTIVITY_TEXT),
        }
    }

    fn item(&mut self, item: Item, completed: bool, activity: &mut dyn FnMut(AgentActivity)) {
        let id = item.id.clone().unwrap_or_default();
        if TOOL_ITEMS.contains(&item.kind.as_str()) {
            // A web search first arrives with an empty query: report it when complete.
            let has_detail =
                item.kind != "web_search" || item.query.as_deref().is_some_and(|q| !q.is_empty());
            // Reported once: when it starts (with its detail), else when it completes.
            let first_sight = if completed {
                !self.open_items.remove(&id)
            } else {
                has_detail && self.open_items.insert(id)
            };
            if first_sight {
                self.facts.turns += 1;
                activity(Self::tool_activity(&item));
            }
            return;
        }
        if !completed {
            return;
        }
        match item.kind.as_str() {
            "agent_message" => {
                let text = item.text.unwrap_or_default();
                activity(AgentActivity::Text(text.clone()));
                self.facts.final_text = Some(text);
            }
            "error" => {
                // A warning, deprecation or model reroute, not a failure.
                let message = item.message.unwrap_or_default();
                if let Some(rest) = message.strip_prefix("model rerouted: ")
                    && let Some((_, to)) = rest.split_once(" -> ")
                {
                    let model = to.split_whitespace().next().unwrap_or_default();
                    self.facts.model = Some(model.to_owned());
                }
            }
            _ => {}
        }
    }
}

impl StreamParser for CodexParser {
    fn line(&mut self, line: &[u8], activity: &mut dyn FnMut(AgentActivity)) {
        let Some(kind) = line_type(line) else {
            return;
        };
        match kind.as_ref() {
            "thread.started" => {
                if let Some(t) = parse::<ThreadStarted<'_>>(line) {
                    self.facts.session_id = Some(t.thread_id.into_owned());
                    activity(AgentActivity::Started {
                        model: self.facts.model.clone(),
                        session_id: self.facts.session_id.clone(),
                    });
                }
            }
            "item.started" | "item.completed" => {
                if let Some(i) = parse::<ItemLine>(line) {
                    self.item(i.item, kind == "item.completed", activity);
                }
            }
            "turn.completed" => {
                if let Some(t) = parse::<TurnCompleted>(line) {
                    let u = t.usage;
                    // OpenAI usage counts cached and cache-written tokens inside input_tokens;
                    // dloop's `input` is what no cache served or stored.
                    self.facts.tokens = TokenUsage {
                        input: u
                            .input_tokens
                            .saturating_sub(u.cached_input_tokens)
                            .saturating_sub(u.cache_write_input_tokens),
                        output: u.output_tokens,
                        cached: u.cached_input_tokens,
                        cache_write: u.cache_write_input_tokens,
                    };
                    self.facts.turns += 1;
                    self.facts.reported_turns = Some(self.facts.turns);
                    self.facts.terminal = Some(Terminal {
                        is_error: false,
                        kind: None,
                        message: None,
                    });
                }
            }
            "turn.failed" => {
                let message = parse::<Failed>(line)
                    .and_then(|f| f.error)
                    .map(|e| e.message)
                    .filter(|m| !m.is_empty())
                    .or_else(|| self.facts.last_error.clone());
                if let Some(m) = &message {
                    activity(AgentActivity::Error(shorten(m, ACTIVITY_TEXT)));
                }
                self.facts.terminal = Some(Terminal {
                    is_error: true,
                    kind: None,
                    message,
                });
            }
            "error" => {
                // Also used for retry notices (`Reconnecting... 1/5`): not fatal by itself.
                if let Some(e) = parse::<ErrorLine>(line) {
                    self.facts.last_error = Some(e.message);
                }
            }
            _ => {}
        }
    }

    fn facts(&self) -> &StreamFacts {
        &self.facts
    }
}
