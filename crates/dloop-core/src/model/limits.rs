//! Limits of a loop file: the run-wide `limits:` (steps, time, budget), a state's own limits,
//! and the `rate_limit:` policy of agent states.
//!
//! Invariant: an unset limit stays `None` in these types (so `show --format json` prints the
//! source faithfully); its default (100 steps, a 6h longest wait, 24h of waiting in all) comes
//! from an accessor method. Only the wait ladder is filled in when read (30s, 2m, 10m, 30m).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DEFAULT_MAX_STEPS, PositiveInt};
use crate::duration::HumanDuration;

/// Run-wide limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// State executions before the run pauses (resumable); default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<PositiveInt>,
    /// Wall clock for the whole run, summed across resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// A transition A->B taken more often than this fails the run (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_edge_visits: Option<PositiveInt>,
    /// Spend budget: US dollars of agent and judge calls (see `budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_cost_usd: Option<f64>,
    /// Spend budget: input + output tokens of agent and judge calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<PositiveInt>,
    /// Spend budget: time spent in agent and judge calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_agent_time: Option<HumanDuration>,
}

/// A state's spend budget (`limits:` of a state): counts only that state's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateLimits {
    /// US dollars of this state's agent and judge calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_cost_usd: Option<f64>,
    /// Input + output tokens of this state's agent and judge calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<PositiveInt>,
    /// Time spent in this state's agent and judge calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_agent_time: Option<HumanDuration>,
}

impl StateLimits {
    /// The state's budget.
    pub fn budget(&self) -> crate::budget::Budget {
        crate::budget::Budget {
            max_cost_usd: self.max_cost_usd,
            max_tokens: self.max_tokens.map(|n| n.0),
            max_agent_time_ms: self.max_agent_time.map(|d| d.as_millis()),
        }
    }
}

impl Limits {
    pub(super) fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// `max_steps`, or [`DEFAULT_MAX_STEPS`].
    pub fn max_steps(&self) -> u64 {
        self.max_steps.map_or(DEFAULT_MAX_STEPS, |n| n.0)
    }

    /// The run's spend budget as the loop sets it.
    pub fn budget(&self) -> crate::budget::Budget {
        crate::budget::Budget {
            max_cost_usd: self.max_cost_usd,
            max_tokens: self.max_tokens.map(|n| n.0),
            max_agent_time_ms: self.max_agent_time.map(|d| d.as_millis()),
        }
    }
}

/// The backoff ladder for an agent that reports a rate or usage limit: short retries first,
/// then long waits up to the reset time the CLI reported, within a total cap. Every wait is
/// recorded in the log (`rate_limited`), so a run killed during one resumes the ladder where it
/// was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicy {
    /// The waits before each retry, in order; the last one repeats (default: 30s, 2m, 10m, 30m).
    #[serde(default = "RateLimitPolicy::default_waits")]
    pub waits: Vec<HumanDuration>,
    /// The longest single wait, also when the CLI reports a later reset time (default: 6h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait: Option<HumanDuration>,
    /// The most time spent waiting for one action in all (default: 24h). Past it the state
    /// routes `rate_limited` if it has that route, else the run pauses (reason `rate_limited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<HumanDuration>,
}

impl RateLimitPolicy {
    fn default_waits() -> Vec<HumanDuration> {
        ["30s", "2m", "10m", "30m"]
            .iter()
            .map(|t| t.parse().expect("valid default duration"))
            .collect()
    }

    /// `max_wait`, or its default of 6 hours.
    pub fn max_wait_ms(&self) -> u64 {
        self.max_wait
            .map_or(6 * 3_600_000, HumanDuration::as_millis)
    }

    /// `total`, or its default of 24 hours.
    pub fn total_ms(&self) -> u64 {
        self.total.map_or(24 * 3_600_000, HumanDuration::as_millis)
    }
}

impl Default for RateLimitPolicy {
    fn default() -> Self {
        Self {
            waits: Self::default_waits(),
            max_wait: None,
            total: None,
        }
    }
}
