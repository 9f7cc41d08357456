//! Prompt states end to end with a scripted agent runner and the injected clock: rate-limit
//! ladders (also across a session killed mid-wait), handoffs, session continuation, an agent
//! that cannot log in, and the durability of the session id.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dloop_core::Timestamp;
use dloop_core::event::{AgentOutcome, AgentReport, Event, PauseReason};
use dloop_core::model::RateLimitPolicy;
use dloop_core::state::RunStatus;
use dloop_runtime::actions::{ActionIo, ActionNote, ActionOutcome, ActionRequest, ActionRunner};
use dloop_runtime::agent_runners::{AgentLimits, AgentRunners};
use dloop_runtime::clock::{Clock, ManualClock};
use dloop_runtime::driver::SessionOptions;
use dloop_runtime::observer::Silent;
use dloop_runtime::process::ProcessEnd;
use dloop_runtime::runs::{ResumeInput, RunEnd, resume_run};
use dloop_store::{FileStore, Store};

use crate::common::Project;

/// One scripted invocation.
#[derive(Clone)]
enum Script {
    /// Answers with this final text.
    Answer(&'static str),
    /// Rate limited; the CLI says the limit resets at this time, if given.
    Limited(Option<Timestamp>),
    /// Not logged in, with this message.
    AuthFailed(&'static str),
    /// The session starts (the runner notes its id), then the runner dies mid-stream.
    DiesAfterSession(&'static str),
}

/// What the runner was called with.
#[derive(Debug, Clone)]
struct Call {
    prompt: String,
    key: String,
    resume_session: Option<String>,
    /// Whether the log on disk already held `agent_session` when the runner died.
    session_durable: bool,
}

struct ScriptedRunner {
    script: Mutex<VecDeque<Script>>,
    calls: Mutex<Vec<Call>>,
    store_root: PathBuf,
}

impl ActionRunner for ScriptedRunner {
    fn run(
        &self,
        request: &ActionRequest<'_>,
        io: &mut ActionIo<'_, '_>,
    ) -> std::io::Result<ActionOutcome> {
        let agent = request.agent.expect("a prompt action has an agent call");
        let step = self.script.lock().expect("lock").pop_front();
        let mut call = Call {
            prompt: String::from_utf8_lossy(request.text).into_owned(),
            key: request.pending.idempotency_key.clone(),
            resume_session: agent.resume_session.map(str::to_owned),
            session_durable: false,
        };
        let mut report = AgentReport {
            profile: agent.profile.to_owned(),
            tokens: dloop_core::event::TokenUsage {
                input: 10,
                output: 5,
                cached: 2,
                cache_write: 0,
            },
            turns: Some(1),
            ..AgentReport::default()
        };
        match step.expect("the script has a step for every call") {
            Script::Answer(text) => {
                io.chunk(
                    dloop_runtime::actions::output::Stream::Stdout,
                    text.as_bytes(),
                )?;
                report.final_text = Some(text.to_owned());
            }
            Script::Limited(resets_at) => {
                report.outcome = AgentOutcome::RateLimited;
                report.message = Some("You've hit your session limit".into());
                report.resets_at = resets_at;
            }
            Script::AuthFailed(message) => {
                report.outcome = AgentOutcome::AuthFailed;
                report.message = Some(message.into());
            }
            Script::DiesAfterSession(id) => {
                (io.note)(ActionNote::SessionStarted {
                    session_id: id.to_owned(),
                });
                let store = FileStore::new(self.store_root.clone());
                let run_id = request
                    .env
                    .iter()
                    .find(|(k, _)| k == "DLOOP_RUN_ID")
                    .map(|(_, v)| v.clone())
                    .expect("run id in the env");
                call.session_durable = store
                    .records_from(&run_id, 1)
                    .expect("log readable")
                    .filter_map(Result::ok)
                    .any(|r| matches!(r.event, Event::AgentSession { .. }));
                self.calls.lock().expect("lock").push(call);
                panic!("the runner dies mid-stream");
            }
        }
        self.calls.lock().expect("lock").push(call);
        let mut outcome = ActionOutcome::from(ProcessEnd {
            status: Some(std::process::ExitStatus::from_raw(0)),
            spawn_error: None,
            timed_out: None,
            stopped: false,
            duration: Duration::from_millis(40),
        });
        outcome.session_id = Some("sess-1".into());
        outcome.agent = Some(report);
        Ok(outcome)
    }
}

struct Agents {
    runner: Arc<ScriptedRunner>,
    policy: Option<RateLimitPolicy>,
}

impl AgentRunners for Agents {
    fn runner(&self, profile: &str) -> Option<Arc<dyn ActionRunner>> {
        (profile == "fake").then(|| Arc::clone(&self.runner) as Arc<dyn ActionRunner>)
    }
    fn default_profile(&self) -> Option<String> {
        Some("fake".into())
    }
    fn rate_limit(&self, _: &str) -> Option<RateLimitPolicy> {
        self.policy.clone()
    }
    fn limits(&self, _: &str) -> AgentLimits {
        AgentLimits::default()
    }
    fn can_resume(&self, _: &str) -> bool {
        true
    }
}

/// A manual clock that records its sleeps and can panic at the `n`-th (a session killed
/// during that wait).
struct RecordingClock {
    inner: ManualClock,
    slept: Mutex<Vec<Duration>>,
    die_at_sleep: Option<usize>,
}

impl RecordingClock {
    fn new(start: u64, die_at_sleep: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            inner: ManualClock::new(Timestamp::from_millis(start)),
            slept: Mutex::new(Vec::new()),
            die_at_sleep,
        })
    }

    fn slept(&self) -> Vec<u64> {
        let slept = self.slept.lock().expect("lock");
        slept.iter().map(|d| d.as_millis() as u64).collect()
    }
}

impl Clock for RecordingClock {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }
    fn sleep(&self, duration: Duration, interrupted: &dyn Fn() -> bool) {
        let count = {
            let mut slept = self.slept.lock().expect("lock");
            slept.push(duration);
            slept.len()
        };
        if self.die_at_sleep == Some(count) {
            panic!("killed during the wait");
        }
        self.inner.sleep(duration, interrupted);
    }
}

const START: u64 = 1_800_000_000_000;

struct Fixture {
    project: Project,
    runner: Arc<ScriptedRunner>,
    policy: Option<RateLimitPolicy>,
}

impl Fixture {
    fn new(script: &[Script]) -> Self {
        let project = Project::new();
        let runner = Arc::new(ScriptedRunner {
            script: Mutex::new(script.iter().cloned().collect()),
            calls: Mutex::new(Vec::new()),
            store_root: project.root().join(".loops/.dloop"),
        });
        Self {
            project,
            runner,
            policy: None,
        }
    }

    fn options(&self, clock: Arc<dyn Clock>) -> SessionOptions {
        let mut options = self.project.options();
        options.clock = clock;
        options.agents = Arc::new(Agents {
            runner: Arc::clone(&self.runner),
            policy: self.policy.clone(),
        });
        options
    }

    fn run(&self, yaml: &str, clock: Arc<dyn Clock>) -> RunEnd {
        self.project.run_full(yaml, self.options(clock), no_llm())
    }

    /// Runs `yaml` expecting the session to die (a panic in the clock or the runner); returns
    /// the id of the run it left behind.
    fn run_and_die(&self, yaml: &str, clock: Arc<dyn Clock>) -> String {
        let options = self.options(clock);
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.project.run_full(yaml, options, no_llm())
        }));
        assert!(died.is_err(), "the session was to die");
        let ids = self.project.store().run_ids().expect("runs");
        assert_eq!(ids.len(), 1);
        ids[0].clone()
    }

    fn resume(&self, run_id: &str, clock: Arc<dyn Clock>) -> RunEnd {
        let store = self.project.store();
        let local_dir = |id: &str| store.local_run_dir(id);
        let input = ResumeInput {
            run_id: run_id.to_owned(),
            ..ResumeInput::default()
        };
        resume_run(&store, &local_dir, &input, self.options(clock), &mut Silent).expect("resumes")
    }

    fn events(&self, run_id: &str) -> Vec<Event> {
        self.project
            .store()
            .records_from(run_id, 1)
            .expect("readable")
            .map(|r| r.expect("valid").event)
            .collect()
    }

    fn calls(&self) -> Vec<Call> {
        self.runner.calls.lock().expect("lock").clone()
    }
}

/// These tests are about the agent's own outcome, not the `llm` judge (tests/judge.rs): their
/// runs are started with `--no-llm`.
fn no_llm() -> dloop_runtime::runs::RunOptions {
    dloop_runtime::runs::RunOptions {
        no_llm: true,
        ..Default::default()
    }
}

const FIX: &str = "initial: fix\nstates:\n  fix:\n    prompt: Fix ${context.what}\n    next: done\n  done:\n    terminal: success\ncontext:\n  what: the tests\n";

fn rate_limits(events: &[Event]) -> Vec<(u32, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RateLimited {
                attempt, wait_ms, ..
            } => Some((*attempt, *wait_ms)),
            _ => None,
        })
        .collect()
}

#[test]
fn rate_limited_twice_then_an_answer_completes_after_two_recorded_waits() {
    let fixture = Fixture::new(&[
        Script::Limited(None),
        Script::Limited(None),
        Script::Answer("fixed"),
    ]);
    let clock = RecordingClock::new(START, None);
    let end = fixture.run(FIX, clock.clone());
    assert_eq!(end.status, RunStatus::Completed, "{:?}", end.state.message);
    let events = fixture.events(&end.run_id);
    assert_eq!(rate_limits(&events), [(1, 30_000), (2, 120_000)]);
    assert_eq!(clock.slept(), [30_000, 120_000]);
    let calls = fixture.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.key == calls[0].key), "one key");
    assert_eq!(calls[0].prompt, "Fix the tests");
    assert_eq!(end.state.step, 1, "the limited attempts are one step");
    assert_eq!(end.state.agent.invocations, 3);
    assert_eq!(end.state.agent.tokens.input, 30);
    assert_eq!(end.state.states["fix"].agent.turns, 3);
    let (folded, _) = fixture
        .project
        .store()
        .load_state(&end.run_id)
        .expect("loads");
    assert_eq!(folded, end.state);
}

#[test]
fn a_session_killed_during_a_wait_resumes_the_ladder_where_it_was() {
    let fixture = Fixture::new(&[
        Script::Limited(None),
        Script::Limited(None),
        Script::Limited(None),
        Script::Answer("fixed"),
    ]);
    let first = RecordingClock::new(START, Some(2));
    let run_id = fixture.run_and_die(FIX, first.clone());
    assert_eq!(fixture.calls().len(), 2);
    // 50 s of the 120 s wait have passed when the run is resumed.
    let later = RecordingClock::new(first.now().as_millis() + 50_000, None);
    let end = fixture.resume(&run_id, later.clone());
    assert_eq!(end.status, RunStatus::Completed, "{:?}", end.state.message);
    assert_eq!(
        later.slept(),
        [70_000, 600_000],
        "what was left, then attempt 3's"
    );
    let events = fixture.events(&run_id);
    assert_eq!(
        rate_limits(&events),
        [(1, 30_000), (2, 120_000), (3, 600_000)]
    );
    assert_eq!(
        fixture.calls().len(),
        4,
        "the step ran once more per wait, never skipped"
    );
    let finished = events
        .iter()
        .filter(|e| matches!(e, Event::Evaluated { .. }))
        .count();
    assert_eq!(finished, 1, "judged once, after the answer");
}

#[test]
fn a_spent_ladder_pauses_without_a_route_and_routes_with_one() {
    let spent = RateLimitPolicy {
        waits: vec!["1m".parse().expect("duration")],
        max_wait: None,
        total: Some("1m".parse().expect("duration")),
    };
    let mut fixture = Fixture::new(&[Script::Limited(None), Script::Limited(None)]);
    fixture.policy = Some(spent.clone());
    let end = fixture.run(FIX, RecordingClock::new(START, None));
    assert_eq!(end.status, RunStatus::Paused);
    assert_eq!(end.state.pause_reason, Some(PauseReason::RateLimited));
    assert!(
        end.state
            .message
            .as_deref()
            .is_some_and(|m| m.contains("hit your session limit")),
        "{:?}",
        end.state.message
    );

    let routed = "initial: fix\nstates:\n  fix:\n    prompt: Fix it\n    on: { rate_limited: later, _: done }\n  later:\n    terminal: failure\n  done:\n    terminal: success\n";
    let mut fixture = Fixture::new(&[Script::Limited(None), Script::Limited(None)]);
    fixture.policy = Some(spent);
    let end = fixture.run(routed, RecordingClock::new(START, None));
    assert_eq!(end.status, RunStatus::Failed);
    assert_eq!(end.state.current.as_deref(), Some("later"));
    assert!(fixture.events(&end.run_id).iter().any(|e| matches!(
        e,
        Event::Transitioned { to, verdict, .. } if to == "later" && verdict == "rate_limited"
    )));
}

#[test]
fn a_reset_time_from_the_cli_is_waited_for() {
    let resets = Timestamp::from_millis(START + 900_000);
    let fixture = Fixture::new(&[Script::Limited(Some(resets)), Script::Answer("ok")]);
    let clock = RecordingClock::new(START, None);
    let end = fixture.run(FIX, clock.clone());
    assert_eq!(end.status, RunStatus::Completed);
    assert_eq!(clock.slept(), [900_000]);
}

#[test]
fn a_handoff_pauses_and_resume_puts_the_note_in_front_of_the_prompt() {
    let fixture = Fixture::new(&[
        Script::Answer("Half of it.\nCONTEXT_HANDOFF: b.rs is left"),
        Script::Answer("done"),
    ]);
    let end = fixture.run(FIX, RecordingClock::new(START, None));
    assert_eq!(end.status, RunStatus::Paused);
    assert_eq!(end.state.pause_reason, Some(PauseReason::Handoff));
    assert!(fixture.events(&end.run_id).iter().any(|e| matches!(
        e,
        Event::HandoffDetected { message, .. } if message == "b.rs is left"
    )));
    let end = fixture.resume(&end.run_id, RecordingClock::new(START + 60_000, None));
    assert_eq!(end.status, RunStatus::Completed);
    let calls = fixture.calls();
    assert_eq!(
        calls[1].prompt,
        "A previous agent session on this task handed off its context. Its handoff note:\n\n\
         b.rs is left\n\n---\n\nFix the tests"
    );
    assert_eq!(calls[1].resume_session, None, "a fresh session");
    // The prompt as sent is kept with the run, named by its intent.
    let events = fixture.events(&end.run_id);
    let blob = events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::ActionStarted { prompt, .. } => prompt.clone(),
            _ => None,
        })
        .expect("the intent names its prompt");
    let stored = fixture
        .project
        .store()
        .get_blob(&end.run_id, &blob)
        .expect("readable")
        .expect("stored");
    assert_eq!(String::from_utf8(stored).expect("utf-8"), calls[1].prompt);
}

#[test]
fn an_interrupted_prompt_resumes_in_its_recorded_session() {
    let fixture = Fixture::new(&[Script::DiesAfterSession("sess-42"), Script::Answer("ok")]);
    let run_id = fixture.run_and_die(FIX, RecordingClock::new(START, None));
    assert!(
        fixture.calls()[0].session_durable,
        "the session id was on disk before the action ended"
    );
    let end = fixture.resume(&run_id, RecordingClock::new(START + 5_000, None));
    assert_eq!(end.status, RunStatus::Completed);
    let calls = fixture.calls();
    assert_eq!(calls[1].resume_session.as_deref(), Some("sess-42"));
    assert_eq!(calls[1].key, calls[0].key, "the same action, on purpose");
    assert!(
        calls[1]
            .prompt
            .starts_with("You were interrupted before you finished")
    );
    assert!(fixture.events(&run_id).iter().any(|e| matches!(
        e,
        Event::ActionStarted { continues_session: Some(s), .. } if s == "sess-42"
    )));
}

#[test]
fn an_agent_that_cannot_log_in_pauses_with_its_message_and_is_never_a_success() {
    let fixture = Fixture::new(&[
        Script::AuthFailed("Invalid API key · Please run /login"),
        Script::Answer("ok"),
    ]);
    let end = fixture.run(FIX, RecordingClock::new(START, None));
    assert_eq!(end.status, RunStatus::Paused);
    assert_eq!(end.state.pause_reason, Some(PauseReason::AgentError));
    let message = end.state.message.clone().unwrap_or_default();
    assert!(message.contains("Please run /login"), "{message}");
    let events = fixture.events(&end.run_id);
    assert!(!events.iter().any(|e| matches!(e, Event::Evaluated { .. })));
    let end = fixture.resume(&end.run_id, RecordingClock::new(START + 5_000, None));
    assert_eq!(end.status, RunStatus::Completed);
    assert_eq!(fixture.calls().len(), 2);
}

#[test]
fn a_prompt_state_without_a_configured_profile_is_refused_before_anything_runs() {
    let project = Project::new();
    let def = crate::common::parse(FIX);
    let request = dloop_runtime::runs::StartRequest {
        def: &def,
        definition_text: FIX,
        loop_name: "test-loop",
        loop_path: None,
        context: dloop_core::model::context_strings(&def.context),
        argv: vec![],
        max_steps: 10,
        timeout_ms: None,
        delay_ms: None,
        scope: None,
        options: no_llm(),
    };
    let store = project.store();
    let local_dir = |id: &str| store.local_run_dir(id);
    let err = dloop_runtime::runs::start_run(
        &store,
        &local_dir,
        &request,
        project.options(),
        &mut Silent,
    )
    .expect_err("refused");
    assert!(err.to_string().contains("names no runner profile"), "{err}");
    assert!(
        store.run_ids().expect("runs").is_empty(),
        "no run was created"
    );
}
