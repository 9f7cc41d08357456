//! Agent runners: each fake agent CLI of `tests/fixtures/agents/` run through [`AgentRunner`]
//! with a real step output in a FileStore run (the kept streams read back without a process
//! are in agent_streams.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dloop_core::Timestamp;
use dloop_core::event::{ActionKind, AgentOutcome, TokenUsage};
use dloop_core::state::PendingAction;
use dloop_runtime::actions::agents::Agents;
use dloop_runtime::actions::output::StepOutput;
use dloop_runtime::actions::{
    ActionIo, ActionNote, ActionOutcome, ActionRequest, AgentActivity, AgentCall,
};
use dloop_runtime::process::{Limits, StopFlag, StopLevel};
use dloop_store::{FileStore, RunMeta, Store};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A temp project with a run (for its output stream) and the fake agents first on PATH.
struct Bench {
    dir: tempfile::TempDir,
    agents: Agents,
    env: Vec<(String, String)>,
}

/// What one invocation gave.
struct Ran {
    outcome: ActionOutcome,
    notes: Vec<ActionNote>,
    activities: Vec<AgentActivity>,
    output: u64,
    elapsed: Duration,
}

impl Ran {
    fn report(&self) -> &dloop_core::event::AgentReport {
        self.outcome.agent.as_ref().expect("an agent report")
    }

    fn outcome(&self) -> AgentOutcome {
        self.report().outcome
    }
}

impl Bench {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = format!(
            "{}:{}",
            repo_root().join("tests/fixtures/agents").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Self {
            agents: Agents::from_yaml(config.as_bytes()).expect("valid config"),
            env: vec![("PATH".into(), path)],
            dir,
        }
    }

    fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, profile: &str, call: Option<AgentCall<'_>>, stop: &StopFlag) -> Ran {
        let store = FileStore::new(self.root().join(".loops/.dloop"));
        let id = format!("agents-20261121T000000-{:04x}", rand_suffix());
        let definition = "initial: a\n".to_owned();
        let meta = RunMeta {
            id: id.clone(),
            loop_name: "agents".into(),
            definition_sha256: RunMeta::sha256_hex(&definition),
            definition,
            context: BTreeMap::new(),
            argv: vec!["dloop".into()],
            created_at: Timestamp::from_millis(0),
            project_root: self.root().display().to_string(),
            loop_path: None,
            started: None,
            worktree: None,
        };
        let mut run = store.create_run(&meta).expect("run");
        let mut stream = run.open_output().expect("output");
        let mut output = StepOutput::new(&mut *stream);
        let pending = PendingAction {
            state: "work".into(),
            step: 1,
            kind: ActionKind::Prompt,
            idempotency_key: format!("{id}-1"),
            output_path: String::new(),
            output_offset: None,
            profile: None,
            prompt: None,
            continues_session: None,
            session_id: None,
        };
        let scratch = self.root().join("scratch");
        let request = ActionRequest {
            pending: &pending,
            text: b"Fix the bug",
            env: &self.env,
            cwd: self.root(),
            scratch: &scratch,
            limits: Limits {
                kill_grace: Duration::from_millis(200),
                ..Limits::default()
            },
            agent: call,
        };
        let mut notes = Vec::new();
        let mut activities = Vec::new();
        let runner = self.agents.runner(profile).expect("profile");
        let started = Instant::now();
        let outcome = {
            let mut io = ActionIo {
                output: &mut output,
                watch: &mut |_, _| {},
                stop,
                note: &mut |n| notes.push(n),
                activity: &mut |a| activities.push(a.clone()),
            };
            runner.run(&request, &mut io).expect("runs")
        };
        let elapsed = started.elapsed();
        let output = output.bytes();
        Ran {
            outcome,
            notes,
            activities,
            output,
            elapsed,
        }
    }

    fn run_mode(&self, profile: &str, mode: &str) -> Ran {
        let bench = Bench {
            dir: tempfile::tempdir().expect("temp dir"),
            agents: self.agents.clone(),
            env: self.env.clone(),
        }
        .with("FAKE_AGENT_MODE", mode);
        bench.run(profile, None, &StopFlag::default())
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

fn call<'a>(resume: Option<&'a str>, max_turns: Option<u64>) -> AgentCall<'a> {
    AgentCall {
        profile: "x",
        model: None,
        extra_args: &[],
        resume_session: resume,
        max_turns,
    }
}

const AGENTS: [&str; 4] = ["claude", "codex", "gemini", "opencode"];
const TEXT: &str = "Done: the change is made and the tests pass.";

#[test]
fn each_agent_answers_with_its_session_tokens_and_cost() {
    let bench = Bench::new("");
    let want: [(&str, &str, TokenUsage, Option<f64>); 4] = [
        (
            "claude",
            "4f1c2b9e-7a3d-4c55-9f0e-2b8d6a1e3c70",
            TokenUsage {
                input: 8,
                output: 70,
                cached: 25542,
                cache_write: 1520,
            },
            Some(0.0421),
        ),
        (
            "codex",
            "019f3a2e-5c1b-7d40-9e21-6a7b8c9d0e1f",
            TokenUsage {
                input: 315,
                output: 122,
                cached: 24448,
                cache_write: 0,
            },
            None,
        ),
        (
            "gemini",
            "6c0e8f2a-3b7d-4e19-a5c4-9d2f1b7e8a03",
            TokenUsage {
                input: 6171,
                output: 319,
                cached: 12040,
                cache_write: 0,
            },
            None,
        ),
        (
            "opencode",
            "ses_3f9a6c1d8ffe1Zq4Kc7Vb2Nw5R",
            TokenUsage {
                input: 11233,
                output: 103,
                cached: 11004,
                cache_write: 11004,
            },
            Some(0.0164),
        ),
    ];
    for (agent, session, tokens, cost) in want {
        let ran = bench.run_mode(agent, "ok");
        let report = ran.report();
        assert_eq!(
            report.outcome,
            AgentOutcome::Success,
            "{agent}: {:?}",
            report.message
        );
        assert_eq!(report.final_text.as_deref(), Some(TEXT), "{agent}");
        assert_eq!(ran.outcome.session_id.as_deref(), Some(session), "{agent}");
        assert_eq!(report.tokens, tokens, "{agent}");
        match (report.cost_usd, cost) {
            (Some(got), Some(want)) => assert!((got - want).abs() < 1e-9, "{agent}: {got}"),
            (got, want) => assert_eq!(got, want, "{agent}"),
        }
        assert!(!report.continued);
        assert_eq!(report.profile, agent);
        assert_eq!(
            ran.notes,
            [ActionNote::SessionStarted {
                session_id: session.into()
            }],
            "{agent}"
        );
        assert!(ran.output > 0, "{agent}: the stream is in the run's output");
        assert!(
            matches!(ran.activities.first(), Some(AgentActivity::Started { session_id: Some(s), .. }) if s == session),
            "{agent}: {:?}",
            ran.activities
        );
        assert!(
            ran.activities.iter().any(
                |a| matches!(a, AgentActivity::Tool { detail, .. } if detail.contains("cargo test"))
            ),
            "{agent}: {:?}",
            ran.activities
        );
        assert_eq!(
            ran.activities.last(),
            Some(&AgentActivity::Finished {
                outcome: AgentOutcome::Success,
                summary: TEXT.into()
            }),
            "{agent}"
        );
    }
}

#[test]
fn structured_and_textual_rate_limits_are_rate_limited() {
    let bench = Bench::new("");
    for agent in AGENTS {
        for mode in ["rate_limit", "rate_limit_text"] {
            let ran = bench.run_mode(agent, mode);
            assert_eq!(
                ran.outcome(),
                AgentOutcome::RateLimited,
                "{agent} {mode}: {:?}",
                ran.report()
            );
            assert!(ran.report().message.is_some(), "{agent} {mode}");
        }
    }
    let claude = bench.run_mode("claude", "rate_limit");
    assert_eq!(
        claude.report().resets_at,
        Some(Timestamp::from_millis(1_788_350_400_000))
    );
    let gemini = bench.run_mode("gemini", "rate_limit");
    let resets = gemini
        .report()
        .resets_at
        .expect("gemini says when")
        .as_millis();
    let in_ms = resets.saturating_sub(dloop_runtime_now());
    let want = (19 * 3600 + 14 * 60 + 47) * 1000;
    assert!(in_ms.abs_diff(want) < 60_000, "{in_ms}");
}

fn dloop_runtime_now() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

#[test]
fn not_logged_in_is_auth_failed_with_the_clis_message() {
    let bench = Bench::new("");
    let want = [
        ("claude", "Please run /login"),
        ("codex", "401 Unauthorized"),
        ("gemini", "Please set an Auth method"),
        ("opencode", "opencode auth login"),
    ];
    for (agent, text) in want {
        let ran = bench.run_mode(agent, "auth");
        assert_eq!(
            ran.outcome(),
            AgentOutcome::AuthFailed,
            "{agent}: {:?}",
            ran.report()
        );
        let message = ran.report().message.clone().unwrap_or_default();
        assert!(message.contains(text), "{agent}: {message}");
    }
}

#[test]
fn an_answer_that_mentions_rate_limits_is_a_success() {
    let bench = Bench::new("");
    for agent in AGENTS {
        let ran = bench.run_mode(agent, "mention_limit");
        assert_eq!(ran.outcome(), AgentOutcome::Success, "{agent}");
        assert!(
            ran.report()
                .final_text
                .as_deref()
                .is_some_and(|t| t.contains("429"))
        );
    }
}

#[test]
fn a_crash_mid_stream_has_no_terminal_event_but_keeps_the_session() {
    let bench = Bench::new("");
    for agent in AGENTS {
        let ran = bench.run_mode(agent, "crash");
        assert_eq!(ran.outcome(), AgentOutcome::NoTerminalEvent, "{agent}");
        assert!(ran.outcome.session_id.is_some(), "{agent}");
        assert_eq!(
            ran.notes.len(),
            1,
            "{agent}: the session was noted before the crash"
        );
        assert!(
            ran.report()
                .message
                .as_deref()
                .is_some_and(|m| m.contains("simulated crash")),
            "{agent}"
        );
    }
}

#[test]
fn handoff_lines_reach_the_final_text() {
    let bench = Bench::new("");
    for agent in AGENTS {
        let ran = bench.run_mode(agent, "handoff");
        assert_eq!(ran.outcome(), AgentOutcome::Success);
        let text = ran.report().final_text.clone().unwrap_or_default();
        assert!(
            text.lines()
                .last()
                .is_some_and(|l| l.starts_with("CONTEXT_HANDOFF: ")),
            "{agent}: {text}"
        );
    }
}

#[test]
fn edits_happen_in_the_working_directory_and_show_as_tool_calls() {
    for agent in AGENTS {
        let bench = Bench::new("")
            .with("FAKE_AGENT_MODE", "edit")
            .with("FAKE_AGENT_EDIT", "src/notes.md:edited");
        let ran = bench.run(agent, None, &StopFlag::default());
        assert_eq!(ran.outcome(), AgentOutcome::Success, "{agent}");
        let written = std::fs::read_to_string(bench.root().join("src/notes.md")).expect("edited");
        assert_eq!(written, "edited\n");
        assert!(
            ran.activities.iter().any(
                |a| matches!(a, AgentActivity::Tool { detail, .. } if detail == "src/notes.md")
            ),
            "{agent}: {:?}",
            ran.activities
        );
    }
}

#[test]
fn a_resumed_session_is_continued_with_each_clis_flag() {
    for (agent, id, flag) in [
        ("claude", "-7d1c-resumed", "--resume=-7d1c-resumed"),
        ("codex", "019f-resumed", "resume 019f-resumed -"),
        ("gemini", "6c0e-resumed", "--resume 6c0e-resumed"),
        ("opencode", "ses_resumed", "--session ses_resumed"),
    ] {
        let bench = Bench::new("");
        let log = bench.root().join("calls.log");
        let bench = bench.with("FAKE_AGENT_LOG", log.display().to_string());
        let ran = bench.run(agent, Some(call(Some(id), None)), &StopFlag::default());
        assert_eq!(ran.outcome(), AgentOutcome::Success, "{agent}");
        assert_eq!(ran.outcome.session_id.as_deref(), Some(id), "{agent}");
        assert!(ran.report().continued, "{agent}");
        let logged = std::fs::read_to_string(&log).expect("log");
        assert!(logged.contains(flag), "{agent}: {logged}");
        assert!(
            logged.contains("prompt: \"Fix the bug\""),
            "{agent}: the prompt came on stdin: {logged}"
        );
    }
}

#[test]
fn codex_running_totals_become_per_step_deltas() {
    let bench = Bench::new("");
    let state = bench.root().join("codex-state");
    std::fs::create_dir_all(&state).expect("state dir");
    let bench = bench.with("FAKE_AGENT_STATE_DIR", state.display().to_string());
    let per_call = TokenUsage {
        input: 315,
        output: 122,
        cached: 24448,
        cache_write: 0,
    };
    let first = bench.run("codex", None, &StopFlag::default());
    let thread = first.outcome.session_id.clone().expect("thread");
    assert_eq!(first.report().tokens, per_call);
    let second = bench.run(
        "codex",
        Some(call(Some(&thread), None)),
        &StopFlag::default(),
    );
    assert_eq!(
        second.report().tokens,
        per_call,
        "the second call's own use, not the thread's"
    );
    let third = bench.run(
        "codex",
        Some(call(Some(&thread), None)),
        &StopFlag::default(),
    );
    assert_eq!(third.report().tokens, per_call);
}

#[test]
fn a_codex_thread_seen_before_counts_its_own_use_even_when_not_resumed_by_dloop() {
    // A profile's own args can continue a thread (`resume --last`): the stream then reports a
    // thread id this run has seen, and its running total; the fake does the same on any call.
    let bench = Bench::new("");
    let state = bench.root().join("codex-state");
    std::fs::create_dir_all(&state).expect("state dir");
    let bench = bench.with("FAKE_AGENT_STATE_DIR", state.display().to_string());
    let first = bench.run("codex", None, &StopFlag::default());
    let second = bench.run("codex", None, &StopFlag::default());
    assert_eq!(first.outcome.session_id, second.outcome.session_id);
    assert_eq!(second.report().tokens, first.report().tokens);
    assert_eq!(second.report().tokens.input, 315);
    // A thread that starts over (its total below the recorded one) counts whole.
    std::fs::remove_file(state.join("codex-019f3a2e-5c1b-7d40-9e21-6a7b8c9d0e1f.calls"))
        .expect("reset the fake thread");
    let third = bench.run("codex", None, &StopFlag::default());
    assert_eq!(third.report().tokens.input, 315);
}

#[test]
fn a_claude_conversation_reset_follows_the_new_session_and_keeps_all_tokens() {
    let bench = Bench::new("").with("FAKE_AGENT_MODE", "reset");
    let ran = bench.run("claude", None, &StopFlag::default());
    let new = "9a8b7c6d-0000-4000-8000-000000000002";
    assert_eq!(ran.outcome(), AgentOutcome::Success);
    assert_eq!(ran.outcome.session_id.as_deref(), Some(new));
    assert_eq!(
        ran.notes,
        [
            ActionNote::SessionStarted {
                session_id: "4f1c2b9e-7a3d-4c55-9f0e-2b8d6a1e3c70".into()
            },
            ActionNote::SessionStarted {
                session_id: new.into()
            },
        ]
    );
    // Before the reset: one call (4 in, 10 out, 1000 cached, 100 written); after: the result.
    assert_eq!(
        ran.report().tokens,
        TokenUsage {
            input: 12,
            output: 80,
            cached: 26542,
            cache_write: 1620
        }
    );
}

#[test]
fn dloop_ends_an_agent_past_its_turn_cap() {
    for agent in AGENTS {
        let bench = Bench::new("")
            .with("FAKE_AGENT_MODE", "many_turns")
            .with("FAKE_AGENT_TURNS", "40");
        let ran = bench.run(agent, Some(call(None, Some(3))), &StopFlag::default());
        assert_eq!(
            ran.outcome(),
            AgentOutcome::Failure,
            "{agent}: {:?}",
            ran.report()
        );
        let message = ran.report().message.clone().unwrap_or_default();
        assert!(message.contains("max_turns is 3"), "{agent}: {message}");
        assert!(
            !ran.outcome.process.stopped,
            "{agent}: a cap is an end, not a stop"
        );
        assert!(
            ran.elapsed < Duration::from_secs(2),
            "{agent}: {:?}",
            ran.elapsed
        );
        let tools = ran
            .activities
            .iter()
            .filter(|a| matches!(a, AgentActivity::Tool { .. }))
            .count();
        assert!(tools <= 5, "{agent}: {tools} tool calls");
    }
}

#[test]
fn a_stop_request_interrupts_a_hung_agent() {
    let bench = Bench::new("").with("FAKE_AGENT_MODE", "hang");
    let stop = StopFlag::default();
    let ran = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(400));
            stop.raise(StopLevel::Stop);
        });
        bench.run("gemini", None, &stop)
    });
    assert_eq!(ran.outcome(), AgentOutcome::Interrupted);
    assert!(ran.outcome.process.stopped);
    assert_eq!(
        ran.outcome.session_id.as_deref(),
        Some("6c0e8f2a-3b7d-4e19-a5c4-9d2f1b7e8a03")
    );
}

#[test]
fn command_profiles_run_any_program_and_classify_by_exit_status() {
    let config = r#"
runners:
  echo:
    base: command
    command: [bash, -c, 'printf "%s\n" "$0"; echo "429 rate limit quota: all fine"', '{prompt}']
  limited:
    base: command
    command: [bash, -c, 'cat >/dev/null; echo "Error: 429 Too Many Requests" >&2; exit 3']
  from-file:
    base: command
    command: [cat, '{prompt_file}']
"#;
    let bench = Bench::new(config);
    let ran = bench.run("echo", None, &StopFlag::default());
    assert_eq!(ran.outcome(), AgentOutcome::Success);
    assert_eq!(
        ran.report().final_text.as_deref(),
        Some("Fix the bug\n429 rate limit quota: all fine")
    );
    let ran = bench.run("limited", None, &StopFlag::default());
    assert_eq!(ran.outcome(), AgentOutcome::RateLimited);
    assert_eq!(
        ran.report().message.as_deref(),
        Some("Error: 429 Too Many Requests")
    );
    let ran = bench.run("from-file", None, &StopFlag::default());
    assert_eq!(ran.report().final_text.as_deref(), Some("Fix the bug"));
    let left: Vec<_> = std::fs::read_dir(bench.root().join("scratch"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the prompt file is removed: {left:?}");
}

#[test]
fn a_missing_program_is_a_failure_not_a_crash() {
    let bench = Bench::new("runners:\n  claude: { command: [/nonexistent/claude] }\n");
    let ran = bench.run("claude", None, &StopFlag::default());
    assert_eq!(ran.outcome(), AgentOutcome::Failure);
    assert!(ran.outcome.process.spawn_error.is_some());
}

#[test]
fn a_reset_in_the_same_chunk_as_the_first_session_still_notes_both_ids() {
    // The whole kept transcript arrives in one read: both session ids must still be noted (they
    // were noted once per chunk, so the first was lost when a reset came in the same read).
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agent-streams/claude-reset.jsonl");
    let config = format!(
        "runners:\n  kept:\n    base: claude\n    command: [bash, -c, 'cat \"$0\"', '{}']\n",
        fixture.display()
    );
    let bench = Bench::new(&config);
    let ran = bench.run("kept", None, &StopFlag::default());
    let ids: Vec<String> = ran
        .notes
        .iter()
        .map(|n| match n {
            ActionNote::SessionStarted { session_id } => session_id.clone(),
        })
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0], ids[1]);
}
