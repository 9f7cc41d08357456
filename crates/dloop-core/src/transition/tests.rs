//! Scenario tests of the transition function: whole runs simulated by folding what [`next`]
//! decides (with scripted action results), including crashes, resumes and limits.

use std::collections::BTreeMap;

use super::*;
use crate::event::{ActionResult, Record, ResumeOverrides};

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
            Decision::Record(e) | Decision::StartAction { intent: e, .. } => apply(&mut state, e),
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
