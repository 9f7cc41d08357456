//! Spend budgets: `limits: {max_cost_usd, max_tokens, max_agent_time}` of a run and of a state,
//! checked after every step that spent (an agent call or a judge call) against the figures the
//! log recorded ([`crate::state::AgentTotals`]).
//!
//! Semantics (issue 9):
//! - the run's budget is its loop's `limits`, then `run`/`resume --max-cost-usd`,
//!   `--max-tokens`, `--max-agent-time` over them (recorded, so they survive resume); a
//!   state's budget is its own `limits` and counts only that state's figures;
//! - tokens are input + output tokens (cached reads are priced in the cost, not counted twice);
//!   agent time is the time spent in agent and judge calls;
//! - a step that spent and left a figure above its budget routes `budget_exceeded` when its
//!   state names that route (and only then: `_` and `next` do not catch it), else the run
//!   pauses with reason `budget` and a message naming the budget and by how much it is over;
//! - a step that spent nothing (a shell wrap-up state after a `budget_exceeded` route) is never
//!   stopped by a budget: budgets stop spending, not cleaning up.

use serde::{Deserialize, Serialize};

use crate::model::{LoopDef, StateDef};
use crate::state::{AgentTotals, RunState};

/// The verdict a state routes on when a budget is exceeded after its step.
pub const BUDGET_EXCEEDED: &str = "budget_exceeded";

/// Spend limits. Unset fields do not limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Input + output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Milliseconds spent in agent (and judge) calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_agent_time_ms: Option<u64>,
}

impl Budget {
    /// Whether nothing is limited.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// `self` with every field `over` sets replaced.
    pub fn overridden_by(self, over: &Budget) -> Budget {
        Budget {
            max_cost_usd: over.max_cost_usd.or(self.max_cost_usd),
            max_tokens: over.max_tokens.or(self.max_tokens),
            max_agent_time_ms: over.max_agent_time_ms.or(self.max_agent_time_ms),
        }
    }

    /// The first limit `totals` is over, as a sentence naming the budget, its figure, and by
    /// how much (`whose` says whose budget: "the run's", "state `fix`'s").
    pub fn exceeded_by(&self, totals: &AgentTotals, whose: &str) -> Option<String> {
        if let Some(max) = self.max_cost_usd
            && totals.cost_usd > max
        {
            return Some(format!(
                "{whose} max_cost_usd (${max:.4}) is exceeded: ${:.4} spent, ${:.4} over",
                totals.cost_usd,
                totals.cost_usd - max
            ));
        }
        let tokens = totals.tokens.input + totals.tokens.output;
        if let Some(max) = self.max_tokens
            && tokens > max
        {
            return Some(format!(
                "{whose} max_tokens ({max}) is exceeded: {tokens} used, {} over",
                tokens - max
            ));
        }
        if let Some(max) = self.max_agent_time_ms
            && totals.time_ms > max
        {
            return Some(format!(
                "{whose} max_agent_time ({} s) is exceeded: {} s used, {} s over",
                max as f64 / 1000.0,
                totals.time_ms as f64 / 1000.0,
                (totals.time_ms - max) as f64 / 1000.0
            ));
        }
        None
    }
}

/// The pause message when a budget is over after the current step of `state` (in `current`),
/// or `None`: only a step that spent is checked ([`RunState::step_spent`]); the run's budget
/// first, then the state's own.
pub fn exceeded(
    def: &LoopDef,
    state: &RunState,
    current: &str,
    state_def: &StateDef,
) -> Option<String> {
    if !state.step_spent {
        return None;
    }
    let run = def.limits.budget().overridden_by(&state.budget);
    if let Some(over) = run.exceeded_by(&state.agent, "the run's") {
        return Some(format!(
            "{over} (after state `{current}`, step {}); resume with a larger budget: \
             `dloop resume {} --max-cost-usd N` (or --max-tokens, --max-agent-time)",
            state.step, state.run_id
        ));
    }
    let own = state_def.limits.as_ref()?.budget();
    let totals = state.states.get(current).map(|s| &s.agent)?;
    let over = own.exceeded_by(totals, &format!("state `{current}`'s"))?;
    Some(format!(
        "{over} (step {}); raise the state's `limits` and `dloop resume {} --reload`, or \
         route `budget_exceeded` from it",
        state.step, state.run_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_budget_over_and_by_how_much() {
        let mut totals = AgentTotals {
            cost_usd: 0.75,
            time_ms: 90_000,
            ..AgentTotals::default()
        };
        totals.tokens.input = 900;
        totals.tokens.output = 200;
        let budget = Budget {
            max_cost_usd: Some(0.5),
            ..Budget::default()
        };
        let message = budget.exceeded_by(&totals, "the run's").expect("over");
        assert!(message.contains("max_cost_usd ($0.5000)"), "{message}");
        assert!(message.contains("$0.2500 over"), "{message}");
        let tokens = Budget {
            max_tokens: Some(1000),
            ..Budget::default()
        };
        assert!(
            tokens
                .exceeded_by(&totals, "x")
                .is_some_and(|m| m.contains("1100 used, 100 over"))
        );
        let time = Budget {
            max_agent_time_ms: Some(60_000),
            ..Budget::default()
        };
        assert!(
            time.exceeded_by(&totals, "x")
                .is_some_and(|m| m.contains("30 s over"))
        );
        assert_eq!(Budget::default().exceeded_by(&totals, "x"), None);
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let loop_budget = Budget {
            max_cost_usd: Some(1.0),
            max_tokens: Some(10),
            max_agent_time_ms: None,
        };
        let raised = loop_budget.overridden_by(&Budget {
            max_cost_usd: Some(5.0),
            ..Budget::default()
        });
        assert_eq!(raised.max_cost_usd, Some(5.0));
        assert_eq!(raised.max_tokens, Some(10));
    }
}
