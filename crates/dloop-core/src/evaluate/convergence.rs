//! The `convergence` evaluator and the memory it keeps between visits of its state.
//!
//! Invariants: the verdict depends only on the text and the [`ConvergenceMemory`] passed in;
//! the memory is updated by the pure [`update_memory`], so the run-state fold can replay it.

use serde::{Deserialize, Serialize};

use super::Verdict;
use super::number::{no_number, read_number};
use crate::model::{ConvergenceEval, Direction};

/// The default `stall_after` of `convergence`.
pub const DEFAULT_STALL_AFTER: u32 = 3;

/// What `convergence` remembers between visits of its state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceMemory {
    /// The best metric seen so far (`None` before the first visit).
    pub best: Option<f64>,
    /// Visits in a row without progress.
    pub since_progress: u32,
}

/// `convergence`: reads the metric like `numeric` (key `metric`). In order: no number is
/// `error`; reaching `target` (≤ for `down`, ≥ for `up`) is `target`; the first visit is
/// `progress`; otherwise the visit is progress when it beats the best so far by more than 0 and
/// at least `tolerance`, and after `stall_after` (default 3) visits in a row without progress the
/// verdict is `stall`. Visits without progress before that are still `progress` ("keep going";
/// the detail says no improvement).
pub(super) fn convergence(
    eval: &ConvergenceEval,
    text: &str,
    memory: &ConvergenceMemory,
) -> Verdict {
    let Some(value) = read_number(text, eval.metric.as_deref()) else {
        return Verdict::new("error", no_number(eval.metric.as_deref()));
    };
    let direction = eval.direction.unwrap_or_default();
    let reached = match direction {
        Direction::Down => value <= eval.target,
        Direction::Up => value >= eval.target,
    };
    if reached {
        return Verdict::new(
            "target",
            format!("{value} reached the target {}", eval.target),
        )
        .with_metric(value);
    }
    let Some(best) = memory.best else {
        return Verdict::new("progress", format!("first reading {value}")).with_metric(value);
    };
    let next = update_memory(eval, memory, value);
    let stall_after = stall_after(eval);
    if next.since_progress == 0 {
        Verdict::new("progress", format!("{value}, best was {best}")).with_metric(value)
    } else if next.since_progress >= stall_after {
        Verdict::new(
            "stall",
            format!(
                "{value}: no progress in {} visits (best {best})",
                next.since_progress
            ),
        )
        .with_metric(value)
    } else {
        Verdict::new(
            "progress",
            format!(
                "{value}: no improvement on {best} ({} of {stall_after} before stall)",
                next.since_progress
            ),
        )
        .with_metric(value)
    }
}

pub(super) fn stall_after(eval: &ConvergenceEval) -> u32 {
    eval.stall_after.map_or(DEFAULT_STALL_AFTER, |n| {
        u32::try_from(n.0).unwrap_or(u32::MAX)
    })
}

/// The memory after a visit that read `metric`: the first reading, or one that improves on
/// `best` by more than 0 and at least `tolerance` (a negative tolerance counts as 0), becomes
/// the new best and resets `since_progress`; any other reading adds one to `since_progress`.
/// Non-finite metrics count as no progress.
pub fn update_memory(
    eval: &ConvergenceEval,
    memory: &ConvergenceMemory,
    metric: f64,
) -> ConvergenceMemory {
    let tolerance = eval
        .tolerance
        .filter(|t| t.is_finite())
        .unwrap_or(0.0)
        .max(0.0);
    let progress = metric.is_finite()
        && match memory.best {
            None => true,
            Some(best) => {
                let gain = match eval.direction.unwrap_or_default() {
                    Direction::Down => best - metric,
                    Direction::Up => metric - best,
                };
                gain > 0.0 && gain >= tolerance
            }
        };
    if progress {
        ConvergenceMemory {
            best: Some(metric),
            since_progress: 0,
        }
    } else {
        ConvergenceMemory {
            best: memory.best,
            since_progress: memory.since_progress.saturating_add(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{conv, text};
    use super::super::*;
    use crate::model::{ConvergenceEval, Direction};

    /// Runs a sequence of readings through evaluate + update_memory, as the runtime and the
    /// fold would, returning the verdicts.
    fn visits(eval: &ConvergenceEval, readings: &[&str]) -> Vec<String> {
        let mut memory = ConvergenceMemory::default();
        let wrapped = Evaluate::Convergence(eval.clone());
        readings
            .iter()
            .map(|reading| {
                let v = evaluate(&wrapped, &text(reading), Some(&memory)).expect("not llm");
                if let Some(metric) = v.metric {
                    memory = update_memory(eval, &memory, metric);
                }
                v.verdict
            })
            .collect()
    }

    #[test]
    fn convergence_table() {
        let down = conv(None, None, 3);
        let up = ConvergenceEval {
            target: 90.0,
            ..conv(Some(Direction::Up), None, 2)
        };
        let tol = conv(None, Some(2.0), 2);
        let cases: Vec<(&ConvergenceEval, Vec<&str>, Vec<&str>)> = vec![
            (
                &down,
                vec!["failed=5", "failed=3", "failed=0"],
                vec!["progress", "progress", "target"],
            ),
            (&down, vec!["failed=0"], vec!["target"]),
            (&down, vec!["failed=-1"], vec!["target"]),
            (
                &down,
                vec!["failed=5", "failed=5", "failed=6", "failed=5"],
                vec!["progress", "progress", "progress", "stall"],
            ),
            (
                &down,
                vec!["failed=5", "failed=5", "failed=5", "failed=4", "failed=4"],
                vec!["progress", "progress", "progress", "progress", "progress"],
            ),
            (
                &down,
                vec!["failed=5", "nothing", "failed=4"],
                vec!["progress", "error", "progress"],
            ),
            (
                &up,
                vec!["failed=50", "failed=60", "failed=90"],
                vec!["progress", "progress", "target"],
            ),
            (
                &up,
                vec!["failed=50", "failed=40", "failed=50"],
                vec!["progress", "progress", "stall"],
            ),
            (&up, vec!["failed=95"], vec!["target"]),
            (
                &tol,
                vec!["failed=10", "failed=9", "failed=8"],
                vec!["progress", "progress", "progress"],
            ),
            (
                &tol,
                vec!["failed=10", "failed=9", "failed=8.5"],
                vec!["progress", "progress", "stall"],
            ),
            (
                &tol,
                vec!["failed=10", "failed=8", "failed=6"],
                vec!["progress", "progress", "progress"],
            ),
        ];
        for (eval, readings, expected) in cases {
            assert_eq!(
                visits(eval, &readings),
                expected,
                "{readings:?} with {eval:?}"
            );
        }
    }

    #[test]
    fn update_memory_table() {
        let down = conv(None, None, 3);
        let up = conv(Some(Direction::Up), Some(1.0), 3);
        let mem = |best: Option<f64>, since| ConvergenceMemory {
            best,
            since_progress: since,
        };
        let cases = [
            (&down, mem(None, 0), 5.0, mem(Some(5.0), 0)),
            (&down, mem(Some(5.0), 2), 4.0, mem(Some(4.0), 0)),
            (&down, mem(Some(5.0), 2), 5.0, mem(Some(5.0), 3)),
            (&down, mem(Some(5.0), 0), 6.0, mem(Some(5.0), 1)),
            (
                &down,
                mem(Some(5.0), u32::MAX),
                6.0,
                mem(Some(5.0), u32::MAX),
            ),
            (&down, mem(Some(5.0), 0), f64::NAN, mem(Some(5.0), 1)),
            (&up, mem(Some(5.0), 1), 5.5, mem(Some(5.0), 2)),
            (&up, mem(Some(5.0), 1), 6.0, mem(Some(6.0), 0)),
            (&up, mem(Some(5.0), 1), 4.0, mem(Some(5.0), 2)),
        ];
        for (eval, before, metric, after) in cases {
            assert_eq!(
                update_memory(eval, &before, metric),
                after,
                "{before:?} + {metric}"
            );
        }
    }

    #[test]
    fn convergence_memory_round_trips() {
        let memory = ConvergenceMemory {
            best: Some(2.5),
            since_progress: 1,
        };
        let json = serde_json::to_string(&memory).expect("serializes");
        assert_eq!(
            serde_json::from_str::<ConvergenceMemory>(&json).expect("reads"),
            memory
        );
    }
}
