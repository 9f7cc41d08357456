//! The `llm` judge and spend budgets with a scripted agent runner: the judge's verdicts (real
//! evidence, made-up evidence, none, garbage), a session that dies while the judge thinks
//! (resume asks the judge again, the action never re-runs), and budgets that pause a run,
//! take a `budget_exceeded` route, or are raised by resume.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dloop_core::budget::Budget;
use dloop_core::event::{AgentReport, Event, PauseReason};
use dloop_core::model::RateLimitPolicy;
use dloop_core::state::RunStatus;
use dloop_core::transition::ResumeRequest;
use dloop_runtime::actions::output::Stream;
use dloop_runtime::actions::{ActionIo, ActionOutcome, ActionRequest, ActionRunner};
use dloop_runtime::agent_runners::{AgentLimits, AgentRunners};
use dloop_runtime::driver::SessionOptions;
use dloop_runtime::observer::Silent;
use dloop_runtime::process::ProcessEnd;
use dloop_runtime::runs::{ResumeInput, RunEnd, RunOptions, resume_run};
use dloop_store::Store;

use crate::common::Project;

/// The agent's answer to the action, and the judge's answers in order (`None`: the runner dies
/// while judging, as a SIGKILLed dloop would).
struct Scripted {
    action_answer: &'static str,
    judge: Mutex<VecDeque<Option<&'static str>>>,
    cost: f64,
    actions: Mutex<u32>,
    judge_prompts: Mutex<Vec<String>>,
}

impl ActionRunner for Scripted {
    fn run(
        &self,
        request: &ActionRequest<'_>,
        io: &mut ActionIo<'_, '_>,
    ) -> std::io::Result<ActionOutcome> {
        let judging = request.env.iter().any(|(k, _)| k == "DLOOP_JUDGE");
        let text = if judging {
            self.judge_prompts
                .lock()
                .expect("lock")
                .push(String::from_utf8_lossy(request.text).into_owned());
            let next = self.judge.lock().expect("lock").pop_front();
            match next {
                Some(Some(answer)) => answer,
                Some(None) => panic!("dloop dies while the judge thinks"),
                None => panic!("no judge answer scripted"),
            }
        } else {
            *self.actions.lock().expect("lock") += 1;
            self.action_answer
        };
        io.chunk(Stream::Stdout, text.as_bytes())?;
        let report = AgentReport {
            profile: "fake".into(),
            final_text: Some(text.to_owned()),
            cost_usd: Some(self.cost),
            tokens: dloop_core::event::TokenUsage {
                input: 100,
                output: 20,
                ..Default::default()
            },
            ..AgentReport::default()
        };
        let mut outcome = ActionOutcome::from(ProcessEnd {
            status: Some(std::process::ExitStatus::from_raw(0)),
            spawn_error: None,
            timed_out: None,
            stopped: false,
            duration: Duration::from_millis(10),
        });
        outcome.agent = Some(report);
        Ok(outcome)
    }
}

struct Agents(Arc<Scripted>);

impl AgentRunners for Agents {
    fn runner(&self, profile: &str) -> Option<Arc<dyn ActionRunner>> {
        (profile == "fake").then(|| Arc::clone(&self.0) as Arc<dyn ActionRunner>)
    }
    fn default_profile(&self) -> Option<String> {
        Some("fake".into())
    }
    fn rate_limit(&self, _: &str) -> Option<RateLimitPolicy> {
        None
    }
    fn limits(&self, _: &str) -> AgentLimits {
        AgentLimits::default()
    }
    fn can_resume(&self, _: &str) -> bool {
        false
    }
}

struct Fixture {
    project: Project,
    agent: Arc<Scripted>,
}

impl Fixture {
    fn new(action_answer: &'static str, judge: &[Option<&'static str>], cost: f64) -> Self {
        Self {
            project: Project::new(),
            agent: Arc::new(Scripted {
                action_answer,
                judge: Mutex::new(judge.iter().copied().collect()),
                cost,
                actions: Mutex::new(0),
                judge_prompts: Mutex::new(Vec::new()),
            }),
        }
    }

    fn options(&self) -> SessionOptions {
        let mut options = self.project.options();
        options.agents = Arc::new(Agents(Arc::clone(&self.agent)));
        options
    }

    fn run(&self, yaml: &str) -> RunEnd {
        self.project
            .run_full(yaml, self.options(), RunOptions::default())
    }

    fn resume(&self, run_id: &str, budget: Budget) -> RunEnd {
        let store = self.project.store();
        let local_dir = |id: &str| store.local_run_dir(id);
        let input = ResumeInput {
            run_id: run_id.to_owned(),
            request: ResumeRequest {
                budget,
                ..ResumeRequest::default()
            },
            ..ResumeInput::default()
        };
        resume_run(&store, &local_dir, &input, self.options(), &mut Silent).expect("resumes")
    }

    fn events(&self, run_id: &str) -> Vec<Event> {
        self.project
            .store()
            .records_from(run_id, 1)
            .expect("readable")
            .map(|r| r.expect("valid").event)
            .collect()
    }

    fn actions(&self) -> u32 {
        *self.agent.actions.lock().expect("lock")
    }
}

const ANSWER: &str = "Edited src/lib.rs.\ntest result: ok. 3 passed; 0 failed\n";

const JUDGED: &str = "initial: fix\nstates:\n  fix:\n    prompt: Fix the tests\n    on: { success: done, failure: failed, partial: failed, blocked: failed, error: broken }\n  done:\n    terminal: success\n  failed:\n    terminal: failure\n  broken:\n    terminal: failure\n";

fn verdicts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Evaluated { verdict, .. } => Some(verdict.clone()),
            _ => None,
        })
        .collect()
}

fn routed_to(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Transitioned { to, .. } => Some(to.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_yes_with_evidence_found_in_the_output_routes_success() {
    let f = Fixture::new(
        ANSWER,
        &[Some(
            r#"{"verdict":"success","confidence":0.9,"evidence":["test result: ok. 3 passed"]}"#,
        )],
        0.0,
    );
    let end = f.run(JUDGED);
    assert_eq!(end.status, RunStatus::Completed);
    let events = f.events(&end.run_id);
    assert_eq!(routed_to(&events), ["done"]);
    let prompts = f.agent.judge_prompts.lock().expect("lock").clone();
    assert_eq!(prompts.len(), 1);
    assert!(
        prompts[0].contains(ANSWER),
        "the judge sees the agent's answer"
    );
    assert!(
        prompts[0].contains("Fix the tests"),
        "and what it was asked"
    );
    // The judge's prompt is kept with the run, and its call counts in the run's figures.
    let Some(Event::Judged {
        prompt: Some(blob),
        agent: Some(_),
        ..
    }) = events.iter().find(|e| matches!(e, Event::Judged { .. }))
    else {
        panic!("a judged record with its prompt blob and figures");
    };
    let stored = f
        .project
        .store()
        .get_blob(&end.run_id, blob)
        .expect("readable")
        .expect("stored");
    assert_eq!(String::from_utf8(stored).expect("utf-8"), prompts[0]);
    assert_eq!(end.state.agent.invocations, 2, "the action and the judge");
    assert_eq!(end.state.agent.tokens.input, 200);
}

#[test]
fn made_up_or_missing_evidence_routes_failure() {
    for answer in [
        r#"{"verdict":"success","confidence":0.95,"evidence":["all 40 tests passed"]}"#,
        r#"{"verdict":"success","confidence":0.95}"#,
    ] {
        let f = Fixture::new(ANSWER, &[Some(answer)], 0.0);
        let end = f.run(JUDGED);
        assert_eq!(end.status, RunStatus::Failed, "{answer}");
        let events = f.events(&end.run_id);
        assert_eq!(verdicts(&events), ["failure"], "{answer}");
        assert_eq!(routed_to(&events), ["failed"], "{answer}");
    }
}

#[test]
fn a_garbage_answer_routes_error_and_keeps_the_raw_answer() {
    let garbage = "Looks great to me, ship it!";
    let f = Fixture::new(ANSWER, &[Some(garbage)], 0.0);
    let end = f.run(JUDGED);
    let events = f.events(&end.run_id);
    assert_eq!(verdicts(&events), ["error"]);
    assert_eq!(routed_to(&events), ["broken"]);
    let raw = events.iter().find_map(|e| match e {
        Event::Judged { raw_answer, .. } => raw_answer.clone(),
        _ => None,
    });
    assert_eq!(raw.as_deref(), Some(garbage));
}

#[test]
fn a_session_that_dies_while_judging_resumes_with_the_judge_and_never_the_action() {
    let yes = r#"{"verdict":"success","confidence":1,"evidence":["Edited src/lib.rs."]}"#;
    let f = Fixture::new(ANSWER, &[None, Some(yes)], 0.0);
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.run(JUDGED)));
    assert!(died.is_err(), "the session was to die");
    let run_id = f.project.store().run_ids().expect("runs")[0].clone();
    let before = f.events(&run_id);
    assert!(
        matches!(before.last(), Some(Event::ActionFinished { .. })),
        "the action's result was durable before the judge ran: {before:?}"
    );
    assert_eq!(f.actions(), 1);
    let end = f.resume(&run_id, Budget::default());
    assert_eq!(end.status, RunStatus::Completed);
    assert_eq!(f.actions(), 1, "the action did not run again");
    assert_eq!(f.agent.judge_prompts.lock().expect("lock").len(), 2);
    let events = f.events(&run_id);
    let started = events
        .iter()
        .filter(|e| matches!(e, Event::ActionStarted { .. }))
        .count();
    assert_eq!(started, 1);
}

#[test]
fn no_llm_judges_a_prompt_state_by_its_agents_outcome() {
    let f = Fixture::new(ANSWER, &[], 0.0);
    let run = RunOptions {
        no_llm: true,
        ..RunOptions::default()
    };
    let end = f.project.run_full(JUDGED, f.options(), run);
    assert_eq!(end.status, RunStatus::Completed);
    assert!(f.agent.judge_prompts.lock().expect("lock").is_empty());
}

/// Three agent steps at $0.40 each (no judge: `--no-llm`).
const SPENDING: &str = "initial: a\nlimits: { max_cost_usd: 1.0 }\nstates:\n  a:\n    prompt: one\n    next: b\n  b:\n    prompt: two\n    next: c\n  c:\n    prompt: three\n    next: done\n  done:\n    terminal: success\n";

fn no_llm() -> RunOptions {
    RunOptions {
        no_llm: true,
        ..RunOptions::default()
    }
}

#[test]
fn a_run_over_its_cost_budget_pauses_at_the_first_step_over_and_resume_raises_it() {
    let f = Fixture::new(ANSWER, &[], 0.4);
    let end = f.project.run_full(SPENDING, f.options(), no_llm());
    assert_eq!(end.status, RunStatus::Paused);
    assert_eq!(end.state.pause_reason, Some(PauseReason::Budget));
    assert_eq!(
        end.state.step, 3,
        "$1.20 after the third step is the first over $1"
    );
    assert_eq!(f.actions(), 3);
    let message = end.state.message.clone().unwrap_or_default();
    assert!(message.contains("max_cost_usd ($1.0000)"), "{message}");
    assert!(message.contains("$0.2000 over"), "{message}");
    // Resuming without a larger budget pauses again at once, running nothing.
    let again = f.resume(&end.run_id, Budget::default());
    assert_eq!(again.state.pause_reason, Some(PauseReason::Budget));
    assert_eq!(f.actions(), 3);
    let raised = Budget {
        max_cost_usd: Some(5.0),
        ..Budget::default()
    };
    let end = f.resume(&end.run_id, raised);
    assert_eq!(end.status, RunStatus::Completed);
    assert_eq!(f.actions(), 3, "the step over budget had already run");
}

#[test]
fn a_budget_exceeded_route_is_taken_and_a_state_budget_counts_its_own_figures() {
    let yaml = "initial: a\nstates:\n  a:\n    prompt: one\n    limits: { max_tokens: 200 }\n    on: { budget_exceeded: over, _: a }\n  over:\n    shell: 'true'\n    next: done\n  done:\n    terminal: success\n";
    let f = Fixture::new(ANSWER, &[], 0.0);
    let end = f.project.run_full(yaml, f.options(), no_llm());
    assert_eq!(end.status, RunStatus::Completed, "{:?}", end.state.message);
    assert_eq!(f.actions(), 2, "120 tokens, then 240 > 200");
    let events = f.events(&end.run_id);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Transitioned { to, verdict, .. } if to == "over" && verdict == "budget_exceeded"
    )));
}

#[test]
fn a_budget_given_at_run_survives_resume_and_the_judge_counts_toward_it() {
    // Each step: the action and the judge, $0.30 each.
    let yes = r#"{"verdict":"success","confidence":1,"evidence":["Edited src/lib.rs."]}"#;
    let yaml = "initial: a\nstates:\n  a:\n    prompt: one\n    on: { success: b, _: b }\n  b:\n    prompt: two\n    on: { success: done, _: done }\n  done:\n    terminal: success\n";
    let f = Fixture::new(ANSWER, &[Some(yes), Some(yes)], 0.3);
    let run = RunOptions {
        budget: Budget {
            max_cost_usd: Some(0.5),
            ..Budget::default()
        },
        ..RunOptions::default()
    };
    let end = f.project.run_full(yaml, f.options(), run);
    assert_eq!(end.state.pause_reason, Some(PauseReason::Budget));
    assert_eq!(
        end.state.step, 1,
        "$0.60 after the first step (action + judge)"
    );
    let again = f.resume(&end.run_id, Budget::default());
    assert_eq!(
        again.state.pause_reason,
        Some(PauseReason::Budget),
        "the run's --max-cost-usd is remembered"
    );
}
