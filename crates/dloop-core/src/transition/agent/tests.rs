//! Prompt-state decisions, driven through `next` and the fold like the runtime drives them.

use std::collections::BTreeMap;

use super::*;
use crate::event::{ActionKind, Record};
use crate::state::{Phase, RunStatus};
use crate::transition::{Decision, ResumeRequest, next, resume_events};

fn def(json: serde_json::Value) -> LoopDef {
    serde_json::from_value(json).expect("valid loop json")
}

fn agent_loop(on: serde_json::Value) -> LoopDef {
    def(serde_json::json!({
        "initial": "fix",
        "states": {
            "fix": { "prompt": "fix it", "on": on },
            "done": { "terminal": "success" },
            "gave_up": { "terminal": "failure" },
        }
    }))
}

struct Run {
    state: RunState,
    records: Vec<Record>,
    now: u64,
}

impl Run {
    fn start(def: &LoopDef) -> Self {
        let mut run = Self {
            state: RunState::default(),
            records: Vec::new(),
            now: 1_000_000,
        };
        run.push(Event::RunStarted {
            run_id: "fix-20261121T000000-abcd".into(),
            loop_name: "fix".into(),
            definition_sha256: "00".into(),
            initial: def.initial.clone().expect("initial"),
            context: BTreeMap::new(),
            max_steps: 100,
            timeout_ms: None,
            delay_ms: None,
        });
        run
    }

    fn push(&mut self, event: Event) {
        let record = Record {
            seq: self.state.last_seq + 1,
            ts: Timestamp(self.now),
            event,
        };
        self.state.apply(&record);
        self.records.push(record);
    }

    /// Follows `next` until it asks to run an action; returns the intent and its wait.
    fn until_action(&mut self, def: &LoopDef) -> (Event, u64) {
        loop {
            match next(def, &self.state, Timestamp(self.now)) {
                Decision::Record(event) => self.push(event),
                Decision::StartAction { intent, wait_ms } => {
                    self.now += wait_ms;
                    self.push(intent.clone());
                    return (intent, wait_ms);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The action ends with `report`; records the follow-up like the runtime does.
    fn finish(&mut self, def: &LoopDef, report: AgentReport, policy: &RateLimitPolicy) {
        let Phase::Acting(pending) = self.state.phase.clone() else {
            panic!("not acting: {:?}", self.state.phase)
        };
        self.push(Event::ActionFinished {
            state: pending.state.clone(),
            step: pending.step,
            capture: None,
            result: ActionResult {
                agent: Some(Box::new(report.clone())),
                duration_ms: 10,
                ..ActionResult::default()
            },
        });
        let state_def = &def.states[&pending.state];
        for event in follow_up(
            def,
            state_def,
            &self.state,
            &report,
            policy,
            Timestamp(self.now),
        ) {
            self.push(event);
        }
    }

    fn resume(&mut self, def: &LoopDef) {
        for event in resume_events(def, &self.state, &ResumeRequest::default()).expect("ok") {
            self.push(event);
        }
    }

    fn refold(&self) -> RunState {
        RunState::from_records(&self.records)
    }
}

fn limited(resets_at: Option<Timestamp>) -> AgentReport {
    AgentReport {
        profile: "claude".into(),
        outcome: AgentOutcome::RateLimited,
        message: Some("You've hit your session limit".into()),
        resets_at,
        ..AgentReport::default()
    }
}

fn ok(text: &str) -> AgentReport {
    AgentReport {
        profile: "claude".into(),
        outcome: AgentOutcome::Success,
        final_text: Some(text.into()),
        ..AgentReport::default()
    }
}

fn key_of(intent: &Event) -> (u64, String) {
    match intent {
        Event::ActionStarted {
            step,
            idempotency_key,
            ..
        } => (*step, idempotency_key.clone()),
        other => panic!("not an intent: {other:?}"),
    }
}

#[test]
fn handoff_notes_are_read_from_a_line_that_starts_with_the_marker() {
    let table = [
        ("all done", None),
        ("CONTEXT_HANDOFF: finish b.rs", Some("finish b.rs")),
        (
            "Partly done.\n  CONTEXT_HANDOFF: a.rs done\nb.rs left\n",
            Some("a.rs done\nb.rs left"),
        ),
        ("I will write CONTEXT_HANDOFF: later", None),
        ("CONTEXT_HANDOFF:", Some("")),
    ];
    for (text, expected) in table {
        assert_eq!(handoff_note(text).as_deref(), expected, "{text:?}");
    }
}

#[test]
fn prompts_are_framed_exactly() {
    assert_eq!(frame_prompt("P", None, false), "P");
    assert_eq!(
        frame_prompt("P", Some("note"), false),
        "A previous agent session on this task handed off its context. Its handoff note:\n\n\
         note\n\n---\n\nP"
    );
    assert_eq!(
        frame_prompt("P", None, true),
        "You were interrupted before you finished this task. Continue where you left off.\n\n\
         ---\n\nP"
    );
}

#[test]
fn verdicts_without_an_evaluator_come_from_the_outcome() {
    let table = [
        (AgentOutcome::Success, "success"),
        (AgentOutcome::Failure, "failure"),
        (AgentOutcome::NoTerminalEvent, "error"),
        (AgentOutcome::ContextLimit, "error"),
        (AgentOutcome::Interrupted, "error"),
    ];
    for (outcome, expected) in table {
        let result = ActionResult {
            agent: Some(Box::new(AgentReport {
                outcome,
                message: Some("boom".into()),
                ..AgentReport::default()
            })),
            ..ActionResult::default()
        };
        let (verdict, detail) = verdict_from_agent(&result);
        assert_eq!(verdict, expected, "{outcome:?}");
        if expected != "success" {
            assert!(detail.is_some_and(|d| d.contains("boom")), "{outcome:?}");
        }
    }
    let spawn_failed = ActionResult {
        error: Some("no such file".into()),
        ..ActionResult::default()
    };
    assert_eq!(
        verdict_from_agent(&spawn_failed),
        ("error".to_owned(), Some("no such file".to_owned()))
    );
}

#[test]
fn rate_limits_retry_the_same_step_and_key_after_each_wait() {
    let def = agent_loop(serde_json::json!({ "success": "done", "failure": "gave_up" }));
    let policy = RateLimitPolicy::default();
    let mut run = Run::start(&def);
    let (first, wait) = run.until_action(&def);
    assert_eq!(wait, 0);
    run.finish(&def, limited(None), &policy);
    assert_eq!(
        run.state.rate_limit_until,
        Some(Timestamp(run.now + 30_000))
    );
    let (second, wait) = run.until_action(&def);
    assert_eq!(wait, 30_000);
    assert_eq!(key_of(&second), key_of(&first), "same step, same key");
    run.finish(&def, limited(None), &policy);
    let (third, wait) = run.until_action(&def);
    assert_eq!(wait, 120_000);
    assert_eq!(key_of(&third), key_of(&first));
    assert_eq!(run.state.rate_limit_until, None, "cleared by the start");
    run.finish(&def, ok("done"), &policy);
    let mut decisions = 0;
    while run.state.status == RunStatus::Running {
        match next(&def, &run.state, Timestamp(run.now)) {
            Decision::Evaluate => run.push(Event::Evaluated {
                state: "fix".into(),
                step: run.state.step,
                verdict: "success".into(),
                detail: None,
                metric: None,
                convergence: None,
            }),
            Decision::Record(event) => run.push(event),
            other => panic!("unexpected {other:?}"),
        }
        decisions += 1;
        assert!(decisions < 20);
    }
    assert_eq!(run.state.status, RunStatus::Completed);
    assert_eq!(run.state.step, 1, "the limited attempts were one step");
    assert_eq!(run.refold(), run.state);
}

#[test]
fn a_run_killed_mid_wait_resumes_the_ladder_with_what_is_left() {
    let def = agent_loop(serde_json::json!({ "_": "done" }));
    let policy = RateLimitPolicy::default();
    let mut run = Run::start(&def);
    run.until_action(&def);
    run.finish(&def, limited(None), &policy);
    run.until_action(&def);
    run.finish(&def, limited(None), &policy);
    // Killed 50 s into the 120 s wait; the log is all that is left.
    run.now += 50_000;
    let mut resumed = Run {
        state: run.refold(),
        records: run.records.clone(),
        now: run.now,
    };
    assert_eq!(resumed.state.rate_limit_waits, 2);
    assert_eq!(resumed.state.rate_limit_waited_ms, 150_000);
    resumed.resume(&def);
    let (intent, wait) = resumed.until_action(&def);
    assert_eq!(wait, 70_000, "only what is left of the wait");
    assert_eq!(key_of(&intent).0, 1);
    resumed.finish(&def, limited(None), &policy);
    let Some(Record {
        event: Event::RateLimited {
            attempt, wait_ms, ..
        },
        ..
    }) = resumed.records.last()
    else {
        panic!("expected rate_limited")
    };
    assert_eq!((*attempt, *wait_ms), (3, 600_000), "attempt 3 is next");
}

#[test]
fn a_spent_ladder_routes_rate_limited_when_named_else_pauses() {
    let policy = RateLimitPolicy {
        waits: vec!["1m".parse().expect("duration")],
        max_wait: None,
        total: Some("1m".parse().expect("duration")),
    };
    let routed = agent_loop(serde_json::json!({ "rate_limited": "gave_up", "_": "done" }));
    let mut run = Run::start(&routed);
    run.until_action(&routed);
    run.finish(&routed, limited(None), &policy);
    run.until_action(&routed);
    run.finish(&routed, limited(None), &policy);
    assert!(matches!(
        &run.state.phase,
        Phase::Evaluated { verdict, .. } if verdict == "rate_limited"
    ));
    assert!(matches!(
        next(&routed, &run.state, Timestamp(run.now)),
        Decision::Record(Event::Transitioned { ref to, .. }) if to == "gave_up"
    ));

    // `_` does not catch it: the run pauses, and resuming starts a fresh ladder.
    let unrouted = agent_loop(serde_json::json!({ "_": "done" }));
    let mut run = Run::start(&unrouted);
    run.until_action(&unrouted);
    run.finish(&unrouted, limited(None), &policy);
    run.until_action(&unrouted);
    run.finish(&unrouted, limited(None), &policy);
    assert_eq!(run.state.status, RunStatus::Paused);
    assert_eq!(run.state.pause_reason, Some(PauseReason::RateLimited));
    run.resume(&unrouted);
    assert_eq!(run.state.rate_limit_waits, 0);
    let (intent, wait) = run.until_action(&unrouted);
    assert_eq!(
        (key_of(&intent).0, wait),
        (1, 0),
        "the step runs again at once"
    );
    assert_eq!(run.refold(), run.state);
}

#[test]
fn a_reset_time_from_the_cli_sets_the_wait() {
    let def = agent_loop(serde_json::json!({ "_": "done" }));
    let mut run = Run::start(&def);
    run.until_action(&def);
    let resets = Timestamp(run.now + 900_000);
    run.finish(&def, limited(Some(resets)), &RateLimitPolicy::default());
    assert_eq!(run.state.rate_limit_until, Some(resets));
    assert!(matches!(
        run.records.last().map(|r| &r.event),
        Some(Event::RateLimited { resets_at: Some(r), wait_ms: 900_000, .. }) if *r == resets
    ));
}

#[test]
fn auth_failure_pauses_with_the_message_and_resume_runs_the_step_again() {
    let def = agent_loop(serde_json::json!({ "_": "done" }));
    let mut run = Run::start(&def);
    let (first, _) = run.until_action(&def);
    let report = AgentReport {
        profile: "claude".into(),
        outcome: AgentOutcome::AuthFailed,
        message: Some("Invalid API key · Please run /login".into()),
        ..AgentReport::default()
    };
    run.finish(&def, report, &RateLimitPolicy::default());
    assert_eq!(run.state.status, RunStatus::Paused);
    assert_eq!(run.state.pause_reason, Some(PauseReason::AgentError));
    let message = run.state.message.clone().unwrap_or_default();
    assert!(message.contains("Please run /login"), "{message}");
    assert!(message.contains("log in"), "{message}");
    assert!(
        !matches!(run.state.phase, Phase::Evaluated { .. }),
        "no verdict"
    );
    run.resume(&def);
    let (again, _) = run.until_action(&def);
    assert_eq!(key_of(&again), key_of(&first));
}

#[test]
fn a_handoff_pauses_then_the_state_runs_again_with_the_note() {
    let def = agent_loop(serde_json::json!({ "_": "done" }));
    let policy = RateLimitPolicy::default();
    let mut run = Run::start(&def);
    run.until_action(&def);
    run.finish(
        &def,
        ok("Half done.\nCONTEXT_HANDOFF: b.rs is left"),
        &policy,
    );
    assert_eq!(run.state.pause_reason, Some(PauseReason::Handoff));
    assert_eq!(run.state.handoff.as_deref(), Some("b.rs is left"));
    run.resume(&def);
    let (intent, _) = run.until_action(&def);
    assert_eq!(key_of(&intent).0, 2, "a new step");
    assert!(matches!(
        intent,
        Event::ActionStarted { ref state, kind: ActionKind::Prompt, continues_session: None, .. }
            if state == "fix"
    ));
    assert_eq!(
        run.state.handoff.as_deref(),
        Some("b.rs is left"),
        "until it finishes"
    );
    run.finish(&def, ok("done"), &policy);
    assert_eq!(
        run.state.handoff, None,
        "consumed by the prompt that finished"
    );

    let mut continuing = def.clone();
    continuing.on_handoff = Some(OnHandoff::Continue);
    let mut run = Run::start(&continuing);
    run.until_action(&continuing);
    run.finish(&continuing, ok("CONTEXT_HANDOFF: go on"), &policy);
    assert_eq!(run.state.status, RunStatus::Running);
    assert_eq!(run.until_action(&continuing).1, 0);
    assert_eq!(run.state.step, 2);
}

#[test]
fn an_interrupted_prompt_with_a_session_continues_it() {
    let def = agent_loop(serde_json::json!({ "_": "done" }));
    let mut run = Run::start(&def);
    let (first, _) = run.until_action(&def);
    run.push(Event::AgentSession {
        state: "fix".into(),
        step: 1,
        session_id: "sess-1".into(),
    });
    // The runner dies; resume interrupts the action and starts it again.
    run.state = run.refold();
    run.resume(&def);
    let (again, _) = run.until_action(&def);
    assert_eq!(key_of(&again), key_of(&first));
    assert!(matches!(
        again,
        Event::ActionStarted { continues_session: Some(ref s), .. } if s == "sess-1"
    ));

    // Without a recorded session it starts fresh.
    let mut run = Run::start(&def);
    run.until_action(&def);
    run.resume(&def);
    assert!(matches!(
        run.until_action(&def).0,
        Event::ActionStarted {
            continues_session: None,
            ..
        }
    ));
}
