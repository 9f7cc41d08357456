//! Opening a new session of a run: the checks `dloop resume` makes and the records it writes
//! first (`run_resumed`, then `action_interrupted` for an action a dead session left running).
//!
//! Invariant: a resume never changes what the run has done; it only adds records, and it is
//! refused (with a [`ResumeError`]) for a run that is over, still out of time, or asked to skip
//! to a state that does not exist.

use std::collections::BTreeMap;

use crate::event::{Event, PauseReason, ResumeOverrides};
use crate::model::LoopDef;
use crate::state::{Phase, RunState};

/// What `dloop resume` asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumeRequest {
    /// `--max-steps`.
    pub max_steps: Option<u64>,
    /// `--timeout`.
    pub timeout_ms: Option<u64>,
    /// `--context K=V`.
    pub context: BTreeMap<String, String>,
    /// `--rerun`.
    pub rerun: bool,
    /// `--skip-to STATE`.
    pub skip_to: Option<String>,
    /// `--max-cost-usd`, `--max-tokens`, `--max-agent-time`.
    pub budget: crate::budget::Budget,
}

/// Why a run cannot be resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// The run died before its first record was durable: nothing ran, nothing to continue.
    #[error(
        "run {run_id} never started: it died before its first record reached the log, so \
         nothing ran; start a new run with `dloop run`"
    )]
    NeverStarted {
        /// The run.
        run_id: String,
    },
    /// Completed, failed or cancelled runs are over.
    #[error("run {run_id} is {status} and cannot be resumed")]
    Finished {
        /// The run.
        run_id: String,
        /// Its status.
        status: &'static str,
    },
    /// A timed-out run needs a larger timeout.
    #[error(
        "run {run_id} timed out after {elapsed_ms} ms; resume with a --timeout larger than that"
    )]
    TimeoutTooSmall {
        /// The run.
        run_id: String,
        /// Its elapsed time.
        elapsed_ms: u64,
    },
    /// `--skip-to` names no state; the second field says which states there are (with a
    /// "did you mean" when one is close).
    #[error("--skip-to names `{0}`, which is not a state of the loop; {1}")]
    UnknownState(String, String),
}

/// The records that open a new session of a run: `run_resumed` with the overrides, then
/// `action_interrupted` for an action the dead session had started and not finished.
///
/// A run paused at `max_steps` and resumed without `--max-steps` gets the loop's `max_steps`
/// again on top of the steps it has taken: resuming means "keep going", and a resume that
/// pauses again at once would surprise everyone.
///
/// # Errors
/// [`ResumeError`] when the run is over, still out of time, or `--skip-to` is unknown.
pub fn resume_events(
    def: &LoopDef,
    state: &RunState,
    request: &ResumeRequest,
) -> Result<Vec<Event>, ResumeError> {
    if state.last_seq == 0 {
        return Err(ResumeError::NeverStarted {
            run_id: state.run_id.clone(),
        });
    }
    if state.status.is_finished() {
        return Err(ResumeError::Finished {
            run_id: state.run_id.clone(),
            status: state.status.as_str(),
        });
    }
    if let Some(target) = &request.skip_to
        && !def.states.contains_key(target)
    {
        let names: Vec<&str> = def.states.keys().map(String::as_str).collect();
        let known = format!("its states: {}", names.join(", "));
        let hint = match crate::diagnostic::suggest(target, names.iter().copied()) {
            Some(close) => format!("did you mean `{close}`? ({known})"),
            None => known,
        };
        return Err(ResumeError::UnknownState(target.clone(), hint));
    }
    let elapsed = state.elapsed_ms();
    let timeout = request.timeout_ms.or(state.timeout_ms);
    if timeout.is_some_and(|limit| elapsed >= limit) {
        return Err(ResumeError::TimeoutTooSmall {
            run_id: state.run_id.clone(),
            elapsed_ms: elapsed,
        });
    }
    let max_steps = request.max_steps.or_else(|| {
        (state.pause_reason == Some(PauseReason::MaxSteps) || state.step >= state.max_steps)
            .then(|| state.step + def.limits.max_steps())
    });
    let mut events = vec![Event::RunResumed {
        overrides: ResumeOverrides {
            max_steps,
            timeout_ms: request.timeout_ms,
            context: request.context.clone(),
            budget: request.budget,
        },
        rerun: request.rerun,
        skip_to: request.skip_to.clone(),
    }];
    events.extend(interrupt_in_flight(state, "crashed"));
    Ok(events)
}

/// The `action_interrupted` record for an action a dead session started and never finished,
/// if the log ends inside one.
pub fn interrupt_in_flight(state: &RunState, reason: &str) -> Option<Event> {
    let Phase::Acting(pending) = &state.phase else {
        return None;
    };
    Some(Event::ActionInterrupted {
        state: pending.state.clone(),
        step: pending.step,
        idempotency_key: pending.idempotency_key.clone(),
        reason: reason.to_owned(),
        bytes: None,
    })
}
