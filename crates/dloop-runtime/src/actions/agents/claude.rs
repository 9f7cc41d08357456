//! Claude Code's `--output-format stream-json --verbose` stream (AGENT_CLIS.md 1).
//!
//! Where things are: the session id in `system/init` (and every line; after a
//! `conversation_reset`, `new_conversation_id`), the final answer in `result.result` (else the
//! last top-level text block), usage and cost in `result` (this invocation's totals, restarted
//! by a `conversation_reset`), turns in `result.num_turns` and, for the cap, counted as distinct
//! top-level assistant message ids.
//!
//! Invariant: token totals are never lost to a reset. The figures of a segment (up to a
//! `conversation_reset`) are banked when the reset comes: its `result` if it had one, else the
//! sum of its assistant messages' per-call usage (deduplicated by message id, since one API call
//! is printed as one line per content block). Cost before a reset is only known from a
//! `result`, so a reset without one undercounts the cost (never the tokens).

use std::borrow::Cow;

use dloop_core::Timestamp;
use dloop_core::event::{AgentOutcome, TokenUsage};
use serde::Deserialize;

use super::stream::{
    ACTIVITY_TEXT, StreamFacts, StreamParser, Terminal, first_argument, line_type, parse, shorten,
    sum,
};
use crate::actions::AgentActivity;

/// Parses a Claude Code stream.
#[derive(Debug, Default)]
pub(crate) struct ClaudeParser {
    facts: StreamFacts,
    /// Tokens and cost of segments before the last `conversation_reset`.
    banked: TokenUsage,
    banked_cost: Option<f64>,
    /// This segment's assistant usage (per API call) and its `result` figures, if any.
    segment: TokenUsage,
    segment_result: Option<(TokenUsage, Option<f64>)>,
    /// The message id of the last top-level assistant line (turns and usage are per id).
    last_message_id: Option<String>,
    /// The last top-level text block (the final answer when `result` has none).
    last_text: Option<String>,
    /// A `rate_limit_event` said `rejected`.
    rate_limit_rejected: bool,
    /// The error kind of a (synthetic) assistant line.
    assistant_error: Option<String>,
}

#[derive(Deserialize)]
struct System<'a> {
    #[serde(borrow, default)]
    subtype: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Assistant<'a> {
    #[serde(borrow)]
    message: Message<'a>,
    #[serde(borrow, default)]
    parent_tool_use_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Vec<Block<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    input: Option<serde_json::Value>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
}

impl From<Usage> for TokenUsage {
    fn from(u: Usage) -> Self {
        TokenUsage {
            input: u.input_tokens,
            output: u.output_tokens,
            cached: u.cache_read_input_tokens,
            cache_write: u.cache_creation_input_tokens,
        }
    }
}

#[derive(Deserialize)]
struct ResultLine<'a> {
    #[serde(borrow, default)]
    subtype: Option<Cow<'a, str>>,
    #[serde(default)]
    is_error: bool,
    #[serde(borrow, default)]
    result: Option<Cow<'a, str>>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
    #[serde(default)]
    num_turns: Option<u64>,
    #[serde(default)]
    total_cost_usd: Option<f64>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    terminal_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    api_error_status: Option<u16>,
}

#[derive(Deserialize)]
struct RateLimitLine {
    rate_limit_info: RateLimitInfo,
}

#[derive(Deserialize)]
struct RateLimitInfo {
    #[serde(default)]
    status: Option<String>,
    #[serde(rename = "resetsAt", default)]
    resets_at: Option<u64>,
}

#[derive(Deserialize)]
struct Reset<'a> {
    #[serde(borrow, default)]
    new_conversation_id: Option<Cow<'a, str>>,
}

fn add_cost(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

impl ClaudeParser {
    fn set_session(&mut self, id: Option<Cow<'_, str>>) {
        if let Some(id) = id.filter(|id| !id.is_empty())
            && self.facts.session_id.as_deref() != Some(&id)
        {
            self.facts.session_id = Some(id.into_owned());
        }
    }

    fn update_totals(&mut self) {
        let (tokens, cost) = match self.segment_result {
            Some((tokens, cost)) => (tokens, cost),
            None => (self.segment, None),
        };
        self.facts.tokens = sum(self.banked, tokens);
        self.facts.cost_usd = add_cost(self.banked_cost, cost);
    }

    fn assistant(&mut self, a: Assistant<'_>, activity: &mut dyn FnMut(AgentActivity)) {
        self.set_session(a.session_id);
        let top_level = a.parent_tool_use_id.is_none();
        let error = a.error.map(Cow::into_owned);
        if top_level {
            let id = a.message.id.as_deref().map(str::to_owned);
            let new_call = id.is_none() || id != self.last_message_id;
            if new_call {
                if error.is_none() {
                    self.facts.turns += 1;
                }
                if let Some(usage) = a.message.usage {
                    self.segment = sum(self.segment, usage.into());
                    self.update_totals();
                }
                self.last_message_id = id;
            }
            if let Some(model) = a.message.model.filter(|m| !m.starts_with('<')) {
                self.facts.model = Some(model.into_owned());
            }
        }
        for block in a.message.content {
            match block.kind.as_ref() {
                "text" => {
                    let text = block.text.unwrap_or_default();
                    if error.is_some() {
                        self.facts.last_error = Some(text.to_string());
                        activity(AgentActivity::Error(shorten(&text, ACTIVITY_TEXT)));
                    } else {
                        if top_level {
                            self.last_text = Some(text.to_string());
                        }
                        activity(AgentActivity::Text(text.into_owned()));
                    }
                }
                "tool_use" => activity(AgentActivity::Tool {
                    name: block.name.unwrap_or_default().into_owned(),
                    detail: block.input.as_ref().map(first_argument).unwrap_or_default(),
                }),
                _ => {}
            }
        }
        if error.is_some() {
            self.assistant_error = error;
        }
    }

    fn result(&mut self, r: ResultLine<'_>) {
        self.set_session(r.session_id);
        self.segment_result = Some((
            r.usage.map(Into::into).unwrap_or_default(),
            r.total_cost_usd,
        ));
        self.update_totals();
        self.facts.reported_turns = r.num_turns;
        let errors: Vec<String> = r
            .errors
            .iter()
            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
            .collect();
        let text = r.result.map(Cow::into_owned);
        let reason = r.terminal_reason.as_deref();
        // Interrupts are classified on terminal_reason, not on subtype/is_error.
        let interrupted = matches!(reason, Some("aborted_streaming" | "aborted_tools"));
        let is_error = r.is_error
            || interrupted
            || r.subtype.as_deref().is_some_and(|s| s.starts_with("error"));
        if is_error {
            let message = text
                .clone()
                .filter(|t| !t.trim().is_empty())
                .or_else(|| (!errors.is_empty()).then(|| errors.join("; ")))
                .or_else(|| r.subtype.as_deref().map(str::to_owned));
            self.facts.terminal = Some(Terminal {
                is_error: true,
                kind: self.error_kind(reason, r.api_error_status),
                message,
            });
        } else {
            self.facts.final_text = text.or_else(|| self.last_text.clone());
            self.facts.terminal = Some(Terminal {
                is_error: false,
                kind: None,
                message: None,
            });
        }
    }

    /// What the structure of a failed `result` says: terminal reason, HTTP status, the
    /// rate-limit event and the synthetic assistant line's `error`.
    fn error_kind(&self, reason: Option<&str>, status: Option<u16>) -> Option<AgentOutcome> {
        match reason {
            Some("aborted_streaming" | "aborted_tools") => return Some(AgentOutcome::Interrupted),
            Some("blocking_limit" | "prompt_too_long") => return Some(AgentOutcome::ContextLimit),
            Some("max_turns" | "budget_exhausted" | "model_error") => {
                return Some(AgentOutcome::Failure);
            }
            _ => {}
        }
        if self.rate_limit_rejected || status == Some(429) {
            return Some(AgentOutcome::RateLimited);
        }
        match status {
            Some(401 | 403) => return Some(AgentOutcome::AuthFailed),
            Some(500..=599) => return Some(AgentOutcome::Unreachable),
            _ => {}
        }
        match self.assistant_error.as_deref() {
            Some("rate_limit") => Some(AgentOutcome::RateLimited),
            Some("authentication_failed" | "billing_error") => Some(AgentOutcome::AuthFailed),
            Some("server_error") => Some(AgentOutcome::Unreachable),
            _ => None,
        }
    }
}

impl StreamParser for ClaudeParser {
    fn line(&mut self, line: &[u8], activity: &mut dyn FnMut(AgentActivity)) {
        let Some(kind) = line_type(line) else {
            return;
        };
        match kind.as_ref() {
            "assistant" => {
                if let Some(a) = parse::<Assistant<'_>>(line) {
                    self.assistant(a, activity);
                }
            }
            "result" => {
                if let Some(r) = parse::<ResultLine<'_>>(line) {
                    self.result(r);
                }
            }
            "system" => {
                if let Some(s) = parse::<System<'_>>(line) {
                    let init = s.subtype.as_deref() == Some("init");
                    self.set_session(s.session_id);
                    if init {
                        if let Some(model) = s.model {
                            self.facts.model = Some(model.into_owned());
                        }
                        activity(AgentActivity::Started {
                            model: self.facts.model.clone(),
                            session_id: self.facts.session_id.clone(),
                        });
                    }
                }
            }
            "rate_limit_event" => {
                if let Some(r) = parse::<RateLimitLine>(line)
                    && r.rate_limit_info.status.as_deref() == Some("rejected")
                {
                    self.rate_limit_rejected = true;
                    self.facts.resets_at = r
                        .rate_limit_info
                        .resets_at
                        .and_then(|s| s.checked_mul(1000))
                        .map(Timestamp::from_millis);
                    activity(AgentActivity::Error("rate limit reached".into()));
                }
            }
            "conversation_reset" => {
                if let Some(r) = parse::<Reset<'_>>(line) {
                    let (tokens, cost) = self.segment_result.take().unwrap_or((self.segment, None));
                    self.banked = sum(self.banked, tokens);
                    self.banked_cost = add_cost(self.banked_cost, cost);
                    self.segment = TokenUsage::default();
                    self.last_message_id = None;
                    self.update_totals();
                    self.set_session(r.new_conversation_id);
                    activity(AgentActivity::Started {
                        model: self.facts.model.clone(),
                        session_id: self.facts.session_id.clone(),
                    });
                }
            }
            _ => {}
        }
    }

    fn facts(&self) -> &StreamFacts {
        &self.facts
    }
}
