//! The rate-limit backoff ladder's arithmetic: given a [`RateLimitPolicy`], how far up the
//! ladder an action already is (as the log says), and when the CLI said its limit resets, how
//! long to wait before the next try, or that the ladder is spent.
//!
//! Rules, in order:
//! 1. the `n`-th wait (from 1) is `waits[n-1]`; past the end the last one repeats; an empty
//!    `waits` means "never wait": the first limit spends the ladder;
//! 2. when the CLI reported a reset time still in the future, the wait is until then instead
//!    (the ladder step is only a guess; the reset time is what the service said);
//! 3. every wait is capped at `max_wait`;
//! 4. the waits of one action add up to at most `total`: a wait that would pass it is cut to
//!    what is left, and once nothing is left the ladder is spent;
//! 5. at most [`MAX_ATTEMPTS`] waits, so a policy of zero-length waits cannot spin for ever.
//!
//! The counters come from the log (`rate_limited` records folded into `RunState`), never from
//! memory, so a run killed mid-ladder resumes it where it was.

use crate::model::RateLimitPolicy;
use crate::timestamp::Timestamp;

/// The most rate-limit waits one action gets, whatever the policy says.
pub const MAX_ATTEMPTS: u32 = 100;

/// Where an action is on its ladder, as the log says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LadderPosition {
    /// Waits so far for this action.
    pub waits: u32,
    /// Their sum.
    pub waited_ms: u64,
}

/// What the ladder says after one more rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LadderStep {
    /// Wait, then try again.
    Wait {
        /// The number of this wait, from 1.
        attempt: u32,
        /// How long.
        wait_ms: u64,
        /// `now + wait_ms`.
        resume_at: Timestamp,
    },
    /// The ladder is spent: route `rate_limited` or pause.
    Exhausted {
        /// Waits that were taken.
        waits: u32,
        /// Their sum.
        waited_ms: u64,
    },
}

/// The next step of the ladder for an action at `position`, limited again at `now`, whose CLI
/// said the limit resets at `resets_at` (if it said).
pub fn next_wait(
    policy: &RateLimitPolicy,
    position: LadderPosition,
    resets_at: Option<Timestamp>,
    now: Timestamp,
) -> LadderStep {
    let exhausted = LadderStep::Exhausted {
        waits: position.waits,
        waited_ms: position.waited_ms,
    };
    let left = policy.total_ms().saturating_sub(position.waited_ms);
    if policy.waits.is_empty() || left == 0 || position.waits >= MAX_ATTEMPTS {
        return exhausted;
    }
    let index = (position.waits as usize).min(policy.waits.len() - 1);
    let ladder = policy.waits[index].as_millis();
    let wait_ms = match resets_at {
        Some(reset) if reset > now => reset.as_millis() - now.as_millis(),
        _ => ladder,
    }
    .min(policy.max_wait_ms())
    .min(left);
    LadderStep::Wait {
        attempt: position.waits + 1,
        wait_ms,
        resume_at: Timestamp::from_millis(now.as_millis().saturating_add(wait_ms)),
    }
}

/// What is left of a wait that ends at `resume_at`, at `now` (zero once it has passed).
pub fn remaining_ms(resume_at: Timestamp, now: Timestamp) -> u64 {
    resume_at.as_millis().saturating_sub(now.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(waits: &[&str], max_wait: Option<&str>, total: Option<&str>) -> RateLimitPolicy {
        RateLimitPolicy {
            waits: waits.iter().map(|w| w.parse().expect("duration")).collect(),
            max_wait: max_wait.map(|w| w.parse().expect("duration")),
            total: total.map(|w| w.parse().expect("duration")),
        }
    }

    fn at(waits: u32, waited_ms: u64) -> LadderPosition {
        LadderPosition { waits, waited_ms }
    }

    const NOW: Timestamp = Timestamp(1_000_000);

    fn wait_of(step: LadderStep) -> u64 {
        match step {
            LadderStep::Wait { wait_ms, .. } => wait_ms,
            LadderStep::Exhausted { .. } => panic!("exhausted: {step:?}"),
        }
    }

    #[test]
    fn waits_climb_the_ladder_and_the_last_one_repeats() {
        let p = policy(&["30s", "2m"], None, None);
        let table = [(0, 30_000), (1, 120_000), (2, 120_000), (7, 120_000)];
        for (waits, expected) in table {
            let step = next_wait(&p, at(waits, 0), None, NOW);
            assert_eq!(
                step,
                LadderStep::Wait {
                    attempt: waits + 1,
                    wait_ms: expected,
                    resume_at: Timestamp(NOW.0 + expected),
                },
                "after {waits} waits"
            );
        }
    }

    #[test]
    fn a_reported_reset_time_replaces_the_ladder_step_but_not_the_caps() {
        let p = policy(&["30s"], Some("1h"), None);
        let in_ten_minutes = Timestamp(NOW.0 + 600_000);
        assert_eq!(
            wait_of(next_wait(&p, at(0, 0), Some(in_ten_minutes), NOW)),
            600_000
        );
        let in_five_hours = Timestamp(NOW.0 + 5 * 3_600_000);
        assert_eq!(
            wait_of(next_wait(&p, at(0, 0), Some(in_five_hours), NOW)),
            3_600_000,
            "capped at max_wait"
        );
        let passed = Timestamp(NOW.0 - 1);
        assert_eq!(
            wait_of(next_wait(&p, at(0, 0), Some(passed), NOW)),
            30_000,
            "a reset time in the past is ignored"
        );
    }

    #[test]
    fn the_total_cuts_the_last_wait_then_spends_the_ladder() {
        let p = policy(&["10m"], None, Some("25m"));
        assert_eq!(wait_of(next_wait(&p, at(2, 1_200_000), None, NOW)), 300_000);
        assert_eq!(
            next_wait(&p, at(3, 1_500_000), None, NOW),
            LadderStep::Exhausted {
                waits: 3,
                waited_ms: 1_500_000
            }
        );
    }

    #[test]
    fn no_waits_or_too_many_attempts_spend_the_ladder_at_once() {
        let empty = policy(&[], None, None);
        assert!(matches!(
            next_wait(&empty, at(0, 0), None, NOW),
            LadderStep::Exhausted { waits: 0, .. }
        ));
        let short = policy(&["1ms"], None, None);
        assert_eq!(wait_of(next_wait(&short, at(3, 3), None, NOW)), 1);
        assert!(matches!(
            next_wait(&short, at(MAX_ATTEMPTS, 100), None, NOW),
            LadderStep::Exhausted { .. }
        ));
    }

    #[test]
    fn defaults_are_thirty_seconds_two_ten_thirty_minutes() {
        let p = RateLimitPolicy::default();
        let waits: Vec<u64> = (0..5)
            .map(|n| wait_of(next_wait(&p, at(n, 0), None, NOW)))
            .collect();
        assert_eq!(waits, [30_000, 120_000, 600_000, 1_800_000, 1_800_000]);
    }

    #[test]
    fn remaining_is_zero_once_passed() {
        assert_eq!(remaining_ms(Timestamp(1_500), Timestamp(1_000)), 500);
        assert_eq!(remaining_ms(Timestamp(1_500), Timestamp(2_000)), 0);
    }
}
