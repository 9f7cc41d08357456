//! The transition function: given a loop and a [`RunState`], what happens next.
//!
//! [`next`] is pure and total: it looks only at the state's [`Phase`] and the definition, and
//! answers with one [`Decision`]. The runtime's step loop is just
//!
//! ```text
//! loop { match next(def, &state, now) {
//!     Record(event)        => add to the batch, apply to state
//!     StartAction{..}      => add the intent record; write the batch, fdatasync; run the action;
//!                             add action_finished
//!     RunAction(pending)   => the intent is already durable: run the action; add action_finished
//!     Evaluate             => judge the result (or the `source:` of a routing state); add evaluated
//!     Stop(status)         => write the batch, fdatasync, exit
//! } }
//! ```
//!
//! so everything a step decides (finish, verdict, route, next state's entry and intent) goes to
//! disk in one write and one sync, before the next action starts (DESIGN.md principle 2).
//! Because `next` works from any [`Phase`], a log cut at any record boundary continues exactly
//! where it stopped.
//!
//! Agent-specific decisions (rate limits, handoffs) are in [`agent`]; what a resume records
//! first is in resume.rs; the scenario tests are in tests.rs.

pub mod agent;
mod resume;

use crate::event::{ActionKind, Event, PauseReason};
use crate::model::{ActionRef, LoopDef, OnInterrupted, StateDef, Terminal};
use crate::state::{PendingAction, Phase, RunState, RunStatus};
use crate::timestamp::Timestamp;

pub use self::resume::{ResumeError, ResumeRequest, interrupt_in_flight, resume_events};

/// What the runtime does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Append this record (and apply it), then ask again.
    Record(Event),
    /// Append this `action_started` intent, make the batch durable, wait `wait_ms` (loop
    /// `delay` or retry backoff) and run the action.
    StartAction {
        /// The `action_started` record.
        intent: Event,
        /// How long to wait before the action starts.
        wait_ms: u64,
    },
    /// The intent is durable and the action has not run in this session: run it.
    RunAction(PendingAction),
    /// Produce the verdict of the current state and record it as `evaluated`.
    Evaluate,
    /// Nothing more to do in this session; the run's status is this.
    Stop(RunStatus),
}

/// The idempotency key of the action of `step`: stable across resumes.
pub fn idempotency_key(run_id: &str, step: u64) -> String {
    format!("{run_id}:{step}")
}

/// Decides what happens next. Pure: the same inputs always give the same decision.
pub fn next(def: &LoopDef, state: &RunState, now: Timestamp) -> Decision {
    if state.status != RunStatus::Running {
        return Decision::Stop(state.status);
    }
    let Some(current) = state.current.as_deref() else {
        return Decision::Record(Event::RunFailed {
            state: None,
            error: "the run has no current state (the log has no run_started)".to_owned(),
        });
    };
    let Some(state_def) = def.states.get(current) else {
        return Decision::Record(Event::RunFailed {
            state: Some(current.to_owned()),
            error: format!("state `{current}` is not in the loop definition"),
        });
    };
    match &state.phase {
        Phase::NotStarted | Phase::Ended => Decision::Stop(state.status),
        Phase::Entering => enter(state, current, state_def, now),
        Phase::Entered => start(state, current, state_def, now),
        Phase::Acting(pending) => Decision::RunAction(pending.clone()),
        Phase::Finished { .. } => Decision::Evaluate,
        Phase::Evaluated { verdict, detail } => {
            route(def, state, current, state_def, verdict, detail.as_deref())
        }
    }
}

fn timed_out(state: &RunState, now: Timestamp) -> Option<Event> {
    let limit = state.timeout_ms?;
    let elapsed = state.elapsed_ms_at(now);
    (elapsed >= limit).then_some(Event::RunTimedOut {
        elapsed_ms: elapsed,
    })
}

fn enter(state: &RunState, current: &str, state_def: &StateDef, now: Timestamp) -> Decision {
    let visit = state.visits(current) + 1;
    if state_def.terminal.is_some() {
        // Reaching a terminal state is not a step: it runs nothing, so max_steps and the
        // timeout never keep a run from recording the end it already reached.
        return Decision::Record(Event::StateEntered {
            state: current.to_owned(),
            step: state.step,
            visit,
        });
    }
    if let Some(event) = timed_out(state, now) {
        return Decision::Record(event);
    }
    if state.step >= state.max_steps {
        return Decision::Record(Event::RunPaused {
            reason: PauseReason::MaxSteps,
            message: Some(format!(
                "reached max_steps ({}) before state `{current}`",
                state.max_steps
            )),
        });
    }
    Decision::Record(Event::StateEntered {
        state: current.to_owned(),
        step: state.step + 1,
        visit,
    })
}

fn start(state: &RunState, current: &str, state_def: &StateDef, now: Timestamp) -> Decision {
    if let Some(terminal) = state_def.terminal {
        return Decision::Record(match terminal {
            Terminal::Success => Event::RunCompleted {
                state: current.to_owned(),
            },
            Terminal::Failure => Event::RunFailed {
                state: Some(current.to_owned()),
                error: match &state.last_error {
                    Some(cause) => {
                        format!("reached failure state `{current}` (last error: {cause})")
                    }
                    None => format!("reached failure state `{current}`"),
                },
            },
        });
    }
    let Some(action) = state_def.action() else {
        return Decision::Evaluate;
    };
    if let Some(event) = timed_out(state, now) {
        return Decision::Record(event);
    }
    let output_path = crate::event::OUTPUT_STREAM.to_owned();
    let kind = match action {
        ActionRef::Shell(_) => ActionKind::Shell,
        ActionRef::Prompt(_) => ActionKind::Prompt,
        ActionRef::SubLoop(_) => ActionKind::SubLoop,
    };
    if let Some(interrupted) = state.interrupted.as_ref().filter(|i| i.state == current) {
        let policy = state_def.on_interrupted.unwrap_or_default();
        if policy == OnInterrupted::Stop && !state.rerun_allowed {
            return Decision::Record(Event::RunPaused {
                reason: PauseReason::NeedsDecision,
                message: Some(format!(
                    "the action of state `{current}` (step {}) was interrupted and the state \
                     says `on_interrupted: stop`; resume with --rerun or --skip-to STATE",
                    interrupted.step
                )),
            });
        }
        // Re-run on purpose: same step, same idempotency key, output appended afresh. A prompt
        // whose agent session is known continues in it (the runtime drops the id when the
        // profile cannot resume, and the record then says the attempt starts fresh).
        return Decision::StartAction {
            intent: Event::ActionStarted {
                state: current.to_owned(),
                step: interrupted.step,
                kind,
                idempotency_key: interrupted.idempotency_key.clone(),
                output_path,
                output_offset: None,
                profile: None,
                prompt: None,
                continues_session: if kind == ActionKind::Prompt {
                    interrupted.session_id.clone()
                } else {
                    None
                },
            },
            wait_ms: 0,
        };
    }
    let retrying = state.retries.get(current).copied().unwrap_or(0) > 0;
    let wait_ms = if let Some(until) = state.rate_limit_until {
        // Waiting out a rate limit: the same step again once `until` has passed; after a
        // resume only what is left of the wait.
        crate::ratelimit::remaining_ms(until, now)
    } else if retrying {
        state_def
            .retries
            .as_ref()
            .and_then(|r| r.backoff)
            .map_or(0, |d| d.as_millis())
    } else if let (Some(delay), Some(ended)) = (state.delay_ms, state.last_action_ended) {
        // The run's delay (the loop's `delay` or `--delay`, as `run_started` recorded it)
        // counts from the previous action's end, so a resume after a pause longer than the
        // delay starts at once instead of waiting it all again.
        delay.saturating_sub(now.as_millis().saturating_sub(ended.as_millis()))
    } else {
        0
    };
    Decision::StartAction {
        intent: Event::ActionStarted {
            state: current.to_owned(),
            step: state.step,
            kind,
            idempotency_key: idempotency_key(&state.run_id, state.step),
            output_path,
            output_offset: None,
            profile: None,
            prompt: None,
            continues_session: None,
        },
        wait_ms,
    }
}

fn route(
    def: &LoopDef,
    state: &RunState,
    current: &str,
    state_def: &StateDef,
    verdict: &str,
    detail: Option<&str>,
) -> Decision {
    if let Some(message) = crate::budget::exceeded(def, state, current, state_def) {
        if let Some(target) = state_def
            .on
            .as_ref()
            .and_then(|on| on.get(crate::budget::BUDGET_EXCEEDED))
        {
            return transition(def, state, current, target, crate::budget::BUDGET_EXCEEDED);
        }
        return Decision::Record(Event::RunPaused {
            reason: PauseReason::Budget,
            message: Some(message),
        });
    }
    if let Some(retries) = state_def.retries.as_ref().filter(|r| r.applies_to(verdict)) {
        let used = state.retries.get(current).copied().unwrap_or(0);
        if used < retries.max {
            return Decision::Record(Event::RetryScheduled {
                state: current.to_owned(),
                retry: used + 1,
                verdict: verdict.to_owned(),
                delay_ms: retries.backoff.map_or(0, |d| d.as_millis()),
            });
        }
        if let Some(target) = &retries.on_exhausted {
            return transition(def, state, current, target, verdict);
        }
    }
    match state_def.route(verdict) {
        Some(target) => transition(def, state, current, target, verdict),
        None if verdict == "error" => Decision::Record(Event::RunFailed {
            state: Some(current.to_owned()),
            error: format!(
                "state `{current}` ended in error ({}) and routes no `error` verdict",
                detail.unwrap_or("no detail")
            ),
        }),
        None => Decision::Record(Event::RunFailed {
            state: Some(current.to_owned()),
            error: format!("state `{current}` has no route for verdict `{verdict}`"),
        }),
    }
}

fn transition(def: &LoopDef, state: &RunState, from: &str, to: &str, verdict: &str) -> Decision {
    if let Some(max) = def.limits.max_edge_visits {
        let taken = state.edge_count(from, to);
        if taken + 1 > max.0 {
            return Decision::Record(Event::RunFailed {
                state: Some(from.to_owned()),
                error: format!(
                    "transition {from} -> {to} would be taken more than {} times \
                     (limits.max_edge_visits)",
                    max.0
                ),
            });
        }
    }
    Decision::Record(Event::Transitioned {
        from: from.to_owned(),
        to: to.to_owned(),
        verdict: verdict.to_owned(),
    })
}

#[cfg(test)]
mod tests;
