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

pub mod agent;

use std::collections::BTreeMap;

use crate::event::{ActionKind, Event, PauseReason, ResumeOverrides};
use crate::model::{ActionRef, LoopDef, OnInterrupted, StateDef, Terminal};
use crate::state::{PendingAction, Phase, RunState, RunStatus};
use crate::timestamp::Timestamp;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ActionResult, Record};

    fn def(json: serde_json::Value) -> LoopDef {
        serde_json::from_value(json).expect("valid loop json")
    }

    fn fix_loop() -> LoopDef {
        def(serde_json::json!({
            "initial": "test",
            "states": {
                "test": { "shell": "t", "on": { "success": "done", "failure": "fix" } },
                "fix": { "shell": "f", "next": "test" },
                "done": { "terminal": "success" },
            }
        }))
    }

    /// Drives `next` like the runtime does, with `exit_code(state, step)` as the actions.
    fn simulate(
        def: &LoopDef,
        state: &mut RunState,
        records: &mut Vec<Record>,
        mut exit_code: impl FnMut(&str, u64) -> i32,
        max_decisions: usize,
    ) -> RunStatus {
        let push = |state: &mut RunState, records: &mut Vec<Record>, event: Event| {
            let record = Record {
                seq: state.last_seq + 1,
                ts: Timestamp(1000 + state.last_seq),
                event,
            };
            state.apply(&record);
            records.push(record);
        };
        for _ in 0..max_decisions {
            match next(def, state, Timestamp(1000 + state.last_seq)) {
                Decision::Record(event) => push(state, records, event),
                Decision::StartAction { intent, .. } => push(state, records, intent),
                Decision::RunAction(pending) => {
                    let code = exit_code(&pending.state, pending.step);
                    let result = ActionResult {
                        exit_code: Some(code),
                        ..ActionResult::default()
                    };
                    let event = Event::ActionFinished {
                        state: pending.state,
                        step: pending.step,
                        capture: None,
                        result,
                    };
                    push(state, records, event);
                }
                Decision::Evaluate => {
                    let verdict = match &state.phase {
                        Phase::Finished { result } if result.exit_code == Some(0) => "success",
                        Phase::Finished { result } if result.exit_code == Some(127) => "error",
                        Phase::Finished { .. } => "failure",
                        _ => "success",
                    };
                    let event = Event::Evaluated {
                        state: state.current.clone().expect("in a state"),
                        step: state.step,
                        verdict: verdict.to_owned(),
                        detail: None,
                        metric: None,
                        convergence: None,
                    };
                    push(state, records, event);
                }
                Decision::Stop(status) => return status,
            }
        }
        panic!("no stop after {max_decisions} decisions");
    }

    fn started(def: &LoopDef, max_steps: u64) -> (RunState, Vec<Record>) {
        let record = Record {
            seq: 1,
            ts: Timestamp(1000),
            event: Event::RunStarted {
                run_id: "fix-20261121T000000-abcd".into(),
                loop_name: "fix".into(),
                definition_sha256: "00".into(),
                initial: def.initial.clone().expect("initial"),
                context: BTreeMap::new(),
                max_steps,
                timeout_ms: None,
                delay_ms: None,
            },
        };
        (RunState::from_records([&record]), vec![record])
    }

    #[test]
    fn fix_loop_completes_after_a_fix() {
        let def = fix_loop();
        let (mut state, mut records) = started(&def, 100);
        let mut test_runs = 0;
        let status = simulate(
            &def,
            &mut state,
            &mut records,
            |s, _| {
                if s == "test" {
                    test_runs += 1;
                    if test_runs == 1 { 1 } else { 0 }
                } else {
                    0
                }
            },
            100,
        );
        assert_eq!(status, RunStatus::Completed);
        assert_eq!(state.step, 3);
        assert_eq!(state.visits("test"), 2);
        assert_eq!(state.edge_count("test", "fix"), 1);
        assert_eq!(state.current.as_deref(), Some("done"));
    }

    #[test]
    fn max_steps_pauses_and_resume_extends() {
        let def = fix_loop();
        let (mut state, mut records) = started(&def, 3);
        let status = simulate(&def, &mut state, &mut records, |_, _| 1, 100);
        assert_eq!(status, RunStatus::Paused);
        assert_eq!(state.pause_reason, Some(PauseReason::MaxSteps));
        assert_eq!(state.step, 3);
        let events = resume_events(&def, &state, &ResumeRequest::default()).expect("resumable");
        for event in events {
            let record = Record {
                seq: state.last_seq + 1,
                ts: state.last_ts,
                event,
            };
            state.apply(&record);
        }
        assert_eq!(state.max_steps, 3 + 100);
        assert_eq!(state.status, RunStatus::Running);
    }

    #[test]
    fn unrouted_error_fails_the_run_but_retries_come_first() {
        let def = def(serde_json::json!({
            "initial": "a",
            "states": {
                "a": { "shell": "x", "next": "done", "retries": { "max": 2 } },
                "done": { "terminal": "success" },
            }
        }));
        let (mut state, mut records) = started(&def, 100);
        let status = simulate(&def, &mut state, &mut records, |_, _| 127, 100);
        assert_eq!(status, RunStatus::Failed);
        assert_eq!(state.step, 3, "one try and two retries");
        let keys: Vec<_> = records
            .iter()
            .filter_map(|r| match &r.event {
                Event::ActionStarted {
                    idempotency_key, ..
                } => Some(idempotency_key.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(keys.len(), 3);
        assert!(
            keys.windows(2).all(|w| w[0] != w[1]),
            "each attempt has its own key"
        );
    }

    #[test]
    fn edge_limit_fails_the_run() {
        let mut def = fix_loop();
        def.limits.max_edge_visits = Some(crate::model::PositiveInt(2));
        let (mut state, mut records) = started(&def, 100);
        let status = simulate(&def, &mut state, &mut records, |_, _| 1, 100);
        assert_eq!(status, RunStatus::Failed);
        assert!(
            state
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("max_edge_visits"))
        );
        assert_eq!(state.edge_count("test", "fix"), 2);
    }

    #[test]
    fn crash_mid_action_reruns_with_the_same_key_and_never_a_finished_one() {
        let def = fix_loop();
        let (mut state, mut records) = started(&def, 100);
        // Run until the first action is started, then "crash".
        loop {
            match next(&def, &state, state.last_ts) {
                Decision::Record(event) | Decision::StartAction { intent: event, .. } => {
                    let record = Record {
                        seq: state.last_seq + 1,
                        ts: state.last_ts,
                        event,
                    };
                    state.apply(&record);
                    records.push(record);
                }
                Decision::RunAction(_) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        let Phase::Acting(first) = state.phase.clone() else {
            panic!("acting")
        };
        for event in resume_events(&def, &state, &ResumeRequest::default()).expect("resumable") {
            let record = Record {
                seq: state.last_seq + 1,
                ts: state.last_ts,
                event,
            };
            state.apply(&record);
            records.push(record);
        }
        let Decision::StartAction {
            intent:
                Event::ActionStarted {
                    idempotency_key,
                    step,
                    ..
                },
            ..
        } = next(&def, &state, state.last_ts)
        else {
            panic!("expected a re-start");
        };
        assert_eq!(idempotency_key, first.idempotency_key);
        assert_eq!(step, first.step);
    }

    #[test]
    fn on_interrupted_stop_pauses_until_rerun() {
        let mut def = fix_loop();
        def.states["test"].on_interrupted = Some(OnInterrupted::Stop);
        let (mut state, _) = started(&def, 100);
        let apply = |state: &mut RunState, event: Event| {
            let record = Record {
                seq: state.last_seq + 1,
                ts: state.last_ts,
                event,
            };
            state.apply(&record);
        };
        while !matches!(state.phase, Phase::Acting(_)) {
            match next(&def, &state, state.last_ts) {
                Decision::Record(e) | Decision::StartAction { intent: e, .. } => {
                    apply(&mut state, e)
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        for e in resume_events(&def, &state, &ResumeRequest::default()).expect("ok") {
            apply(&mut state, e);
        }
        let Decision::Record(pause @ Event::RunPaused { .. }) = next(&def, &state, state.last_ts)
        else {
            panic!("expected a pause");
        };
        apply(&mut state, pause);
        assert_eq!(state.pause_reason, Some(PauseReason::NeedsDecision));
        let rerun = ResumeRequest {
            rerun: true,
            ..ResumeRequest::default()
        };
        for e in resume_events(&def, &state, &rerun).expect("ok") {
            apply(&mut state, e);
        }
        assert!(matches!(
            next(&def, &state, state.last_ts),
            Decision::StartAction { .. }
        ));
    }

    #[test]
    fn elapsed_time_sums_sessions_and_skips_downtime() {
        let def = fix_loop();
        let (mut state, _) = started(&def, 100);
        let at = |state: &mut RunState, ts: u64, event: Event| {
            let record = Record {
                seq: state.last_seq + 1,
                ts: Timestamp(ts),
                event,
            };
            state.apply(&record);
        };
        at(
            &mut state,
            1500,
            Event::StateEntered {
                state: "test".into(),
                step: 1,
                visit: 1,
            },
        );
        // The process dies; an hour later the run is resumed.
        at(
            &mut state,
            3_601_500,
            Event::RunResumed {
                overrides: ResumeOverrides::default(),
                rerun: false,
                skip_to: None,
            },
        );
        at(
            &mut state,
            3_602_000,
            Event::RunPaused {
                reason: PauseReason::Stopped,
                message: None,
            },
        );
        assert_eq!(state.elapsed_ms(), 500 + 500);
    }

    #[test]
    fn resume_refuses_finished_runs_and_unknown_skip_targets() {
        let def = fix_loop();
        let (mut state, mut records) = started(&def, 100);
        let request = ResumeRequest {
            skip_to: Some("nope".into()),
            ..ResumeRequest::default()
        };
        assert_eq!(
            resume_events(&def, &state, &request),
            Err(ResumeError::UnknownState(
                "nope".into(),
                format!(
                    "its states: {}",
                    def.states.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            ))
        );
        simulate(&def, &mut state, &mut records, |_, _| 0, 100);
        assert!(matches!(
            resume_events(&def, &state, &ResumeRequest::default()),
            Err(ResumeError::Finished { .. })
        ));
    }

    use proptest::prelude::Just;

    proptest::proptest! {
        /// Folding a prefix, round-tripping through JSON (a `state.json` snapshot), then
        /// folding the rest equals folding everything at once.
        #[test]
        fn fold_is_split_and_snapshot_invariant(
            codes in proptest::collection::vec(proptest::prop_oneof![Just(0), Just(1), Just(127)], 1..40),
            split_seed in 0usize..1000,
        ) {
            let mut def = fix_loop();
            def.states["fix"].retries = Some(crate::model::Retries { max: 1, on: None, backoff: None, on_exhausted: None });
            def.states["test"].on.as_mut().expect("routes").insert("error".into(), "fix".into());
            let (mut state, mut records) = started(&def, 30);
            let mut i = 0;
            simulate(&def, &mut state, &mut records, |_, _| { i += 1; codes[i % codes.len()] }, 10_000);
            let split = split_seed % (records.len() + 1);
            let prefix = RunState::from_records(&records[..split]);
            let json = serde_json::to_string(&prefix).expect("serializable");
            let mut resumed: RunState = serde_json::from_str(&json).expect("parses");
            for record in &records[split..] {
                resumed.apply(record);
            }
            proptest::prop_assert_eq!(resumed, state);
        }
    }
}
