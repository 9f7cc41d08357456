//! The door from a session to the agent runners of `prompt:` states: which runner a profile
//! name means, the profile's defaults, and what it can do.
//!
//! A session holds one [`AgentRunners`] (in `SessionOptions::agents`); the registry built from
//! `.loops/config.yaml` and the built-in profiles implements it, tests plug in scripted ones.
//! [`NoAgents`], the default, knows no profile: a loop with a prompt state is then refused before
//! anything runs ([`check_runners`]), naming the state and the profile.
//!
//! Which profile a prompt state runs: the state's `runner`, else the loop's `runner`, else
//! [`AgentRunners::default_profile`].

use std::sync::Arc;
use std::time::Duration;

use dloop_core::model::{ActionRef, LoopDef, RateLimitPolicy, StateDef};

use crate::actions::ActionRunner;
use crate::error::RuntimeError;

/// A profile's own limits; a state's `timeout`, `idle_timeout` and `max_turns` win over them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentLimits {
    /// Wall clock per invocation.
    pub timeout: Option<Duration>,
    /// Longest silence before the invocation is ended.
    pub idle_timeout: Option<Duration>,
    /// Most agent turns per invocation (dloop enforces it: the CLIs' own caps overrun).
    pub max_turns: Option<u64>,
}

/// The agent runner profiles a session can use.
pub trait AgentRunners: Send + Sync {
    /// The runner of profile `profile`, or `None` when no such profile is configured.
    fn runner(&self, profile: &str) -> Option<Arc<dyn ActionRunner>>;

    /// The profile of prompt states that name none (and whose loop names none).
    fn default_profile(&self) -> Option<String>;

    /// The profile's rate-limit ladder, when it sets one (a state's `rate_limit` wins; without
    /// either, [`RateLimitPolicy::default`]).
    fn rate_limit(&self, profile: &str) -> Option<RateLimitPolicy>;

    /// The profile's own limits.
    fn limits(&self, profile: &str) -> AgentLimits;

    /// Whether the profile's CLI can continue a recorded session (`--resume ID`); when it
    /// cannot, an interrupted prompt action is run again in a fresh session.
    fn can_resume(&self, profile: &str) -> bool;
}

/// No agent runners at all (the default of a session).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAgents;

impl AgentRunners for NoAgents {
    fn runner(&self, _: &str) -> Option<Arc<dyn ActionRunner>> {
        None
    }
    fn default_profile(&self) -> Option<String> {
        None
    }
    fn rate_limit(&self, _: &str) -> Option<RateLimitPolicy> {
        None
    }
    fn limits(&self, _: &str) -> AgentLimits {
        AgentLimits::default()
    }
    fn can_resume(&self, _: &str) -> bool {
        false
    }
}

/// The profile a prompt state runs: its `runner`, the loop's, then the registry's default.
pub fn profile_of(def: &LoopDef, state: &StateDef, agents: &dyn AgentRunners) -> Option<String> {
    state
        .runner
        .clone()
        .or_else(|| def.runner.clone())
        .or_else(|| agents.default_profile())
}

/// The ladder in force for a prompt state running `profile`.
pub fn rate_limit_policy(
    state: &StateDef,
    profile: &str,
    agents: &dyn AgentRunners,
) -> RateLimitPolicy {
    state
        .rate_limit
        .clone()
        .or_else(|| agents.rate_limit(profile))
        .unwrap_or_default()
}

/// Refuses a loop whose prompt states name a profile no runner serves, before anything runs.
///
/// # Errors
/// [`RuntimeError::Unsupported`] naming the first such state, its profile, and what to do.
pub fn check_runners(def: &LoopDef, agents: &dyn AgentRunners) -> Result<(), RuntimeError> {
    for (name, state) in &def.states {
        let Some(ActionRef::Prompt(_)) = state.action() else {
            continue;
        };
        match profile_of(def, state, agents) {
            None => {
                return Err(RuntimeError::Unsupported(format!(
                    "state `{name}` sends a prompt but names no runner profile, and no default \
                     is configured; add `runner: PROFILE` to the state or the loop, or a \
                     default in .loops/config.yaml"
                )));
            }
            Some(profile) if agents.runner(&profile).is_none() => {
                return Err(RuntimeError::Unsupported(format!(
                    "state `{name}` uses runner profile `{profile}`, which is not configured; \
                     add it to .loops/config.yaml or pick a configured profile"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The runner profiles of a project (`.loops/config.yaml` over the built-ins) as the session
/// sees them.
impl AgentRunners for crate::actions::agents::Agents {
    fn runner(&self, profile: &str) -> Option<Arc<dyn ActionRunner>> {
        crate::actions::agents::Agents::runner(self, profile)
    }

    fn default_profile(&self) -> Option<String> {
        Some(self.default_runner().to_owned())
    }

    fn rate_limit(&self, profile: &str) -> Option<RateLimitPolicy> {
        self.profile(profile).map(|p| p.rate_limit.clone())
    }

    fn limits(&self, profile: &str) -> AgentLimits {
        self.profile(profile)
            .map_or_else(AgentLimits::default, |p| AgentLimits {
                timeout: p.timeout.map(|d| d.0),
                idle_timeout: p.idle_timeout.map(|d| d.0),
                max_turns: p.max_turns,
            })
    }

    fn can_resume(&self, profile: &str) -> bool {
        // The four agent CLIs continue a session by id; a plain command has no sessions.
        self.profile(profile)
            .is_some_and(|p| p.base != dloop_core::config::Base::Command)
    }
}
