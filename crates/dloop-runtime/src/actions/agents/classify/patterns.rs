//! The failure texts of the agent CLIs (rate limit, authentication, network, context size),
//! compiled once per profile into [`Patterns`].
//!
//! Invariant: [`Patterns::classify_text`] is only ever given a failed invocation's error text
//! and stderr (see the parent module); the order of its checks decides overlapping texts.

use dloop_core::event::AgentOutcome;
use regex::{Regex, RegexBuilder};

/// Rate-limit texts seen across the four CLIs (AGENT_CLIS.md), case-insensitive. "Out of
/// credits" is not here: it needs a person, not a wait ([`AUTH`]).
pub const RATE_LIMIT: &[&str] = &[
    r"\b429\b",
    r"too many requests",
    r"rate[ _-]?limit",
    r"usage[ _]limit",
    r"hit your (\w+ )?limit",
    r"session limit",
    r"quota",
    r"resource_exhausted",
    r"exhausted your capacity",
];

/// Texts that mean a person must act: not logged in, a bad key, no credits, billing.
pub const AUTH: &[&str] = &[
    r"not logged in",
    r"please run /login",
    r"\blog ?in\b.*\b(required|again|expired)\b",
    r"invalid api key",
    r"invalid[ _]api[ _]key",
    r"api key not valid",
    r"(missing|no) api key",
    r"authentication[ _](failed|error|required)",
    r"\bunauthori[sz]ed\b",
    r"\b401\b",
    r"oauth token (has )?expired",
    r"token (is )?expired",
    r"set an auth method",
    r"providerautherror",
    r"out of credits",
    r"credit balance is too low",
    r"billing[ _]error",
];

/// Texts that mean the service could not be reached.
pub const UNREACHABLE: &[&str] = &[
    r"\benotfound\b",
    r"\beai_again\b",
    r"\beconnrefused\b",
    r"\beconnreset\b",
    r"\betimedout\b",
    r"getaddrinfo",
    r"fetch failed",
    r"could not resolve",
    r"failed to lookup address",
    r"dns error",
    r"error sending request",
    r"connection (refused|reset|error|failed)",
    r"unable to connect",
    r"network (error|is unreachable)",
    r"stream disconnected",
    r"\boffline\b",
];

/// Texts that mean the conversation outgrew the model's context.
pub const CONTEXT: &[&str] = &[
    r"prompt is too long",
    r"context[ _](window|length)",
    r"maximum context length",
    r"contextoverflowerror",
    r"input is too long",
];

/// The compiled text patterns of one profile.
#[derive(Debug, Clone)]
pub struct Patterns {
    context: Regex,
    auth: Regex,
    rate_limit: Regex,
    unreachable: Regex,
}

impl Patterns {
    /// The built-in patterns plus a profile's extra rate-limit patterns (those that do not
    /// compile are left out: the config parser already refused them).
    pub fn new(extra_rate_limit: &[String]) -> Self {
        // Compiling the patterns costs far more than matching them: the built-in set is
        // compiled once per process and shared (a `Regex` clone is a reference count).
        static BUILT_IN: std::sync::OnceLock<Patterns> = std::sync::OnceLock::new();
        if extra_rate_limit.is_empty() {
            return BUILT_IN.get_or_init(|| Self::compile(&[])).clone();
        }
        Self::compile(extra_rate_limit)
    }

    fn compile(extra_rate_limit: &[String]) -> Self {
        let valid_extra = extra_rate_limit
            .iter()
            .filter(|p| one(&[p.as_str()]).is_some())
            .map(String::as_str);
        let rate: Vec<&str> = RATE_LIMIT.iter().copied().chain(valid_extra).collect();
        Self {
            context: one(CONTEXT).expect("built-in patterns compile"),
            auth: one(AUTH).expect("built-in patterns compile"),
            rate_limit: one(&rate).expect("built-in and checked patterns compile"),
            unreachable: one(UNREACHABLE).expect("built-in patterns compile"),
        }
    }

    /// What a failure's text says it is, if any pattern matches.
    pub fn classify_text(&self, text: &str) -> Option<AgentOutcome> {
        // Context first (a long prompt's error can mention tokens and limits), then auth (an
        // out-of-credits message can also say "limit"), then rate limits, then the network.
        if self.context.is_match(text) {
            Some(AgentOutcome::ContextLimit)
        } else if self.auth.is_match(text) {
            Some(AgentOutcome::AuthFailed)
        } else if self.rate_limit.is_match(text) {
            Some(AgentOutcome::RateLimited)
        } else if self.unreachable.is_match(text) {
            Some(AgentOutcome::Unreachable)
        } else {
            None
        }
    }
}

fn one(patterns: &[&str]) -> Option<Regex> {
    let joined = patterns
        .iter()
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    RegexBuilder::new(&joined)
        .case_insensitive(true)
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_patterns_extend_the_rate_limit_texts() {
        let plain = Patterns::new(&[]);
        let extra = Patterns::new(&["overloaded_error".into(), "a(b".into()]);
        assert_eq!(plain.classify_text("Overloaded_Error"), None);
        assert_eq!(
            extra.classify_text("Overloaded_Error"),
            Some(AgentOutcome::RateLimited)
        );
    }
}
