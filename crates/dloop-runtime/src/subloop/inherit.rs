//! What a child run inherits from its parent: its `--no-llm`, and what is left of its budget.
//!
//! Invariant: a child never spends more than its parent's budget leaves. The child's spend
//! reaches the parent's figures only when the child ends (as its step's agent report), so the
//! child runs under the parent's limits less what the parent spent, and under its own loop's
//! limits, whichever is smaller; a parent resumed with a larger budget passes what that leaves
//! to the child it continues.

use dloop_core::budget::Budget;
use dloop_core::model::LoopDef;
use dloop_core::state::AgentTotals;

/// What a child takes from its parent run: its `--no-llm`, and what is left of its budget.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inherited {
    /// The parent's `--no-llm`.
    pub(crate) no_llm: bool,
    /// What the parent's budget leaves for the child ([`budget_left`]), before the child's own
    /// loop limits are taken into account ([`Inherited::budget_for`]).
    pub(crate) budget: Budget,
}

impl Inherited {
    /// The budget a child of loop `def` runs under, as overrides of its loop's own limits:
    /// for each figure the parent limits, the smaller of what the parent leaves and the child
    /// loop's own limit, so neither can be overspent; a figure the parent does not limit is
    /// left to the child's loop (`None`), so a `resume CHILD --reload` still takes new limits.
    pub(crate) fn budget_for(&self, def: &LoopDef) -> Budget {
        fn min<T: PartialOrd>(parent: Option<T>, own: Option<T>) -> Option<T> {
            match (parent, own) {
                (Some(a), Some(b)) => Some(if b < a { b } else { a }),
                (parent, _) => parent,
            }
        }
        let own = def.limits.budget();
        Budget {
            max_cost_usd: min(self.budget.max_cost_usd, own.max_cost_usd),
            max_tokens: min(self.budget.max_tokens, own.max_tokens),
            max_agent_time_ms: min(self.budget.max_agent_time_ms, own.max_agent_time_ms),
        }
    }
}

/// What a parent's `budget` leaves after it `spent`: each limit less the figure counted against
/// it, never below zero (a child of a parent at its limit pauses after its first spending
/// step). The child's spend only reaches the parent when the child ends, so a child that runs
/// under this cannot take its parent past its budget by more than one step.
pub(crate) fn budget_left(budget: &Budget, spent: &AgentTotals) -> Budget {
    let tokens = spent.tokens.input + spent.tokens.output;
    Budget {
        max_cost_usd: budget
            .max_cost_usd
            .map(|max| (max - spent.cost_usd).max(0.0)),
        max_tokens: budget.max_tokens.map(|max| max.saturating_sub(tokens)),
        max_agent_time_ms: budget
            .max_agent_time_ms
            .map(|max| max.saturating_sub(spent.time_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(cost: f64, tokens: u64, ms: u64) -> AgentTotals {
        let mut totals = AgentTotals {
            cost_usd: cost,
            time_ms: ms,
            ..AgentTotals::default()
        };
        totals.tokens.input = tokens / 2;
        totals.tokens.output = tokens - tokens / 2;
        totals
    }

    #[test]
    fn what_is_left_is_each_limit_less_its_figure_never_below_zero() {
        let budget = Budget {
            max_cost_usd: Some(1.0),
            max_tokens: Some(100),
            max_agent_time_ms: None,
        };
        let left = budget_left(&budget, &spent(0.25, 30, 5_000));
        assert_eq!(left.max_cost_usd, Some(0.75));
        assert_eq!(left.max_tokens, Some(70));
        assert_eq!(left.max_agent_time_ms, None);
        let over = budget_left(&budget, &spent(3.0, 500, 0));
        assert_eq!(over.max_cost_usd, Some(0.0));
        assert_eq!(over.max_tokens, Some(0));
        assert!(budget_left(&Budget::default(), &spent(9.0, 9, 9)).is_empty());
    }

    #[test]
    fn the_child_runs_under_the_smaller_of_its_parents_and_its_own_limits() {
        let def = dloop_core::parse::parse_loop(
            b"initial: a\nlimits:\n  max_cost_usd: 0.5\n  max_tokens: 10\nstates:\n  a:\n    terminal: success\n",
        )
        .expect("valid loop")
        .def;
        let inherited = Inherited {
            no_llm: false,
            budget: Budget {
                max_cost_usd: Some(2.0),
                max_tokens: Some(5),
                max_agent_time_ms: Some(1_000),
            },
        };
        let budget = inherited.budget_for(&def);
        assert_eq!(budget.max_cost_usd, Some(0.5));
        assert_eq!(budget.max_tokens, Some(5));
        assert_eq!(budget.max_agent_time_ms, Some(1_000));
        // A parent without a budget overrides nothing: the child's own limits stay in force.
        let free = Inherited {
            no_llm: false,
            budget: Budget::default(),
        };
        assert!(free.budget_for(&def).is_empty());
    }
}
