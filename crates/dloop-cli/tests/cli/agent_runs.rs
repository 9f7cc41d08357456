//! Agent runs end to end with the real binary and the fake agent CLIs of
//! `tests/fixtures/agents/` (first on `PATH`): a shell check and a `prompt` fix on every
//! profile, the figures in the log and in `inspect --json`, a handoff, a session continued after
//! a kill, and how a run shows an agent's work (`run`, `run -v`, `output`, `output --raw`).
//! Agent failures (rate limits, login, hangs) are in agent_failures.rs, which shares the
//! helpers here.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Output, TestProject, count, redact_runs, repo_root, signal, verified_log};

/// `PATH` with the fake agents first.
fn fakes_path() -> String {
    format!(
        "{}:{}",
        repo_root().join("tests/fixtures/agents").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `dloop ARGS` with the fakes on `PATH` and `env`.
pub(crate) fn dl(p: &TestProject, args: &[&str], env: &[(&str, &str)]) -> Output {
    let path = fakes_path();
    let mut all = vec![("PATH", path.as_str())];
    all.extend_from_slice(env);
    p.dloop_env(&no_llm(args), &all)
}

/// `run` gets `--no-llm`: these tests check what the agent's own outcome does, so prompt states
/// are judged by it, not by the `llm` judge (tested in compose.rs).
fn no_llm<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    if args.first() == Some(&"run") {
        all.push("--no-llm");
    }
    all
}

/// `dloop ARGS` started in the background, with the fakes on `PATH` and `env`.
pub(crate) fn spawn(p: &TestProject, args: &[&str], env: &[(&str, &str)]) -> Child {
    let path = fakes_path();
    let mut all = vec![("PATH", path.as_str())];
    all.extend_from_slice(env);
    p.spawn(&no_llm(args), &all)
}

/// A loop: `check` runs `check`; on failure `fix` prompts `runner` (with the state fields in
/// `fix_fields`, each line indented by four spaces) and goes back to `check`.
pub(crate) fn check_fix(runner: &str, check: &str, fix_fields: &str) -> String {
    format!(
        "initial: check\nstates:\n  check:\n    shell: '{check}'\n    on: {{ success: done, failure: fix }}\n  fix:\n    prompt: Make the check pass\n    runner: {runner}\n{fix_fields}    next: check\n  done:\n    terminal: success\n"
    )
}

/// A check that fails until its `n`-th run.
pub(crate) fn passes_on(n: u32) -> String {
    format!("c=$(cat count 2>/dev/null || echo 0); c=$((c+1)); echo $c > count; test $c -ge {n}")
}

/// The `action_finished` records of state `fix`.
pub(crate) fn fix_results(log: &[Value]) -> Vec<&Value> {
    log.iter()
        .filter(|r| r["type"] == "action_finished" && r["state"] == "fix")
        .collect()
}

/// The records of type `ty`.
pub(crate) fn of_type<'a>(log: &'a [Value], ty: &str) -> Vec<&'a Value> {
    log.iter().filter(|r| r["type"] == ty).collect()
}

/// `inspect RUN --json`.
pub(crate) fn inspect(p: &TestProject, run: &str) -> Value {
    let out = p.dloop(&["inspect", run, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    out.json()
}

/// The text of a file in the project, empty when it is missing.
fn read_or_empty(p: &TestProject, rel: &str) -> String {
    std::fs::read_to_string(p.root().join(rel)).unwrap_or_default()
}

const COMMAND_PROFILE: &str = "runners:\n  mine:\n    base: command\n    command: [sh, -c, 'cat > prompt.seen; echo ok > fixed; echo \"Fixed: the check passes now.\"']\n";

/// A profile and what its fake reports: session id, tokens (input, output, cached, cache
/// write), cost.
type Case = (&'static str, Option<&'static str>, [u64; 4], Option<f64>);

const CLAUDE_SESSION: &str = "4f1c2b9e-7a3d-4c55-9f0e-2b8d6a1e3c70";
const DONE: &str = "Done: the change is made and the tests pass.";

#[test]
fn a_shell_check_and_a_prompt_fix_complete_on_every_profile() {
    // (profile, session id, tokens {input, output, cached, cache_write}, cost)
    let cases: [Case; 5] = [
        (
            "claude",
            Some(CLAUDE_SESSION),
            [8, 70, 25542, 1520],
            Some(0.0421),
        ),
        (
            "codex",
            Some("019f3a2e-5c1b-7d40-9e21-6a7b8c9d0e1f"),
            [315, 122, 24448, 0],
            None,
        ),
        (
            "gemini",
            Some("6c0e8f2a-3b7d-4e19-a5c4-9d2f1b7e8a03"),
            [6171, 319, 12040, 0],
            None,
        ),
        (
            "opencode",
            Some("ses_3f9a6c1d8ffe1Zq4Kc7Vb2Nw5R"),
            [11233, 103, 11004, 11004],
            Some(0.0164),
        ),
        ("mine", None, [0, 0, 0, 0], None),
    ];
    for (runner, session, tokens, cost) in cases {
        let p = TestProject::new();
        p.write(".loops/config.yaml", COMMAND_PROFILE);
        p.write_loop("fix", &check_fix(runner, "test -f fixed", ""));
        let out = dl(
            &p,
            &["run", "fix"],
            &[("FAKE_AGENT_MODE", "edit"), ("FAKE_AGENT_EDIT", "fixed:ok")],
        );
        assert_eq!(out.code, 0, "{runner}: {}", out.render());
        let (id, dir) = p.only_run();
        let log = verified_log(&dir);
        let fixes = fix_results(&log);
        assert_eq!(fixes.len(), 1, "{runner}");
        let fix = fixes[0];
        let agent = &fix["agent"];
        assert_eq!(agent["profile"], runner);
        assert_eq!(agent["outcome"], "success", "{runner}: {fix}");
        let text = if runner == "mine" {
            "Fixed: the check passes now."
        } else {
            DONE
        };
        assert_eq!(
            agent["final_text"].as_str().map(str::trim_end),
            Some(text),
            "{runner}"
        );
        assert_eq!(fix["session_id"].as_str(), session, "{runner}: {fix}");
        let t = &agent["tokens"];
        let logged = [
            t["input"].as_u64().unwrap_or(0),
            t["output"].as_u64().unwrap_or(0),
            t["cached"].as_u64().unwrap_or(0),
            t["cache_write"].as_u64().unwrap_or(0),
        ];
        assert_eq!(logged, tokens, "{runner}: {agent}");
        assert_eq!(agent["cost_usd"].as_f64(), cost, "{runner}: {agent}");
        if runner == "mine" {
            assert_eq!(p.read("prompt.seen"), "Make the check pass", "on stdin");
        } else {
            assert_eq!(count(&log, "agent_session"), 1, "{runner}");
        }

        let json = inspect(&p, &id);
        assert_eq!(json["status"], "completed");
        let sums = &json["agent"];
        assert_eq!(sums["invocations"], 1, "{runner}: {sums}");
        assert_eq!(
            [
                &sums["tokens_in"],
                &sums["tokens_out"],
                &sums["tokens_cached"],
                &sums["tokens_cache_write"]
            ]
            .map(|v| v.as_u64().unwrap_or(0)),
            tokens,
            "{runner}: {sums}"
        );
        assert_eq!(
            sums["cost_usd"].as_f64().unwrap_or(0.0),
            cost.unwrap_or(0.0),
            "{runner}"
        );
        assert_eq!(sums["session_id"].as_str(), session, "{runner}");
        assert_eq!(json["states"]["fix"]["agent"], *sums, "{runner}");
    }
}

#[test]
fn inspect_sums_codex_running_totals_per_step_and_keeps_a_claude_reset_whole() {
    // Codex reports a thread's running total: two fix steps on one thread are 315 input each
    // (the fake's per-call use), 630 in all, not 315 + 630.
    let p = TestProject::new();
    let state = p.root().join("codex-state");
    std::fs::create_dir(&state).expect("state dir");
    p.write_loop("fix", &check_fix("codex", &passes_on(3), ""));
    let out = dl(
        &p,
        &["run", "fix"],
        &[("FAKE_AGENT_STATE_DIR", &state.display().to_string())],
    );
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, dir) = p.only_run();
    let log = verified_log(&dir);
    let fixes = fix_results(&log);
    assert_eq!(fixes.len(), 2);
    for fix in &fixes {
        assert_eq!(fix["agent"]["tokens"]["input"], 315, "{fix}");
        assert_eq!(fix["agent"]["tokens"]["cached"], 24448, "{fix}");
        assert_eq!(fix["agent"]["tokens"]["output"], 122, "{fix}");
    }
    let sums = inspect(&p, &id)["agent"].clone();
    assert_eq!(sums["invocations"], 2);
    assert_eq!(sums["tokens_in"], 630, "{sums}");
    assert_eq!(sums["tokens_cached"], 48896, "{sums}");
    assert_eq!(sums["tokens_out"], 244, "{sums}");

    // Claude's conversation_reset: the new session id, and the use before the reset is kept.
    let p = TestProject::new();
    p.write_loop("fix", &check_fix("claude", &passes_on(2), ""));
    let out = dl(&p, &["run", "fix"], &[("FAKE_AGENT_MODE", "reset")]);
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, dir) = p.only_run();
    let log = verified_log(&dir);
    let new = "9a8b7c6d-0000-4000-8000-000000000002";
    let sessions: Vec<&Value> = of_type(&log, "agent_session")
        .iter()
        .map(|r| &r["session_id"])
        .collect();
    assert_eq!(sessions, [CLAUDE_SESSION, new]);
    assert_eq!(fix_results(&log)[0]["session_id"], new);
    let sums = inspect(&p, &id)["agent"].clone();
    assert_eq!(sums["session_id"], new);
    assert_eq!(
        [
            &sums["tokens_in"],
            &sums["tokens_out"],
            &sums["tokens_cached"],
            &sums["tokens_cache_write"]
        ],
        [12, 80, 26542, 1620],
        "{sums}"
    );
}

/// A project whose `fix` (claude) follows `script` (one fake mode per call), with the ladder
/// `rate_limit` in the state.
pub(crate) fn scripted(script: &str, rate_limit: &str, routes: Option<&str>) -> TestProject {
    let p = TestProject::new();
    p.write("script", script);
    let fields = format!("    rate_limit: {rate_limit}\n");
    let text = check_fix("claude", "test -f fixed", &fields);
    let text = match routes {
        Some(on) => text.replace("    next: check\n", &format!("    on: {on}\n")),
        None => text,
    };
    p.write_loop("fix", &text);
    p
}

pub(crate) fn script_env(p: &TestProject) -> [(String, String); 3] {
    [
        (
            "FAKE_AGENT_SCRIPT".to_owned(),
            p.root().join("script").display().to_string(),
        ),
        ("FAKE_AGENT_EDIT".to_owned(), "fixed:ok".to_owned()),
        (
            "FAKE_AGENT_LOG".to_owned(),
            p.root().join("agent.log").display().to_string(),
        ),
    ]
}

pub(crate) fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// How many times the scripted fake was called.
pub(crate) fn calls(p: &TestProject) -> u32 {
    read_or_empty(p, "script.count").trim().parse().unwrap_or(0)
}

#[test]
fn a_handoff_pauses_and_resume_sends_its_note_in_a_fresh_session() {
    let p = TestProject::new();
    p.write_loop("fix", &check_fix("claude", "test -f fixed", ""));
    let agent_log = p.root().join("agent.log").display().to_string();
    let out = dl(
        &p,
        &["run", "fix"],
        &[
            ("FAKE_AGENT_MODE", "handoff"),
            ("FAKE_AGENT_LOG", &agent_log),
        ],
    );
    assert_eq!(out.code, 3, "{}", out.render());
    let (id, dir) = p.only_run();
    assert_eq!(inspect(&p, &id)["reason"], "handoff");
    let out = dl(
        &p,
        &["resume", &id],
        &[
            ("FAKE_AGENT_MODE", "edit"),
            ("FAKE_AGENT_EDIT", "fixed:ok"),
            ("FAKE_AGENT_LOG", &agent_log),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.render());
    let calls = p.read("agent.log");
    let prompts: Vec<&str> = calls.lines().filter(|l| l.starts_with("prompt:")).collect();
    assert_eq!(prompts.len(), 2, "{calls}");
    assert!(
        prompts[1].contains(
            "handed off its context. Its handoff note:\\n\\ncontext is nearly full; continue \
             from the summary above.\\n\\n---\\n\\nMake the check pass"
        ),
        "{calls}"
    );
    assert!(!calls.contains("--resume"), "a fresh session: {calls}");
    let log = verified_log(&dir);
    assert_eq!(count(&log, "handoff_detected"), 1);

    // on_handoff: continue: no pause.
    let p = TestProject::new();
    p.write("script", "handoff\nedit\n");
    p.write_loop(
        "fix",
        &format!(
            "on_handoff: continue\n{}",
            check_fix("claude", "test -f fixed", "")
        ),
    );
    let env = script_env(&p);
    let out = dl(&p, &["run", "fix"], &refs(&env));
    assert_eq!(out.code, 0, "{}", out.render());
    let (_, dir) = p.only_run();
    let log = verified_log(&dir);
    assert_eq!(count(&log, "handoff_detected"), 1);
    assert_eq!(count(&log, "run_paused"), 0);
    assert!(p.read("agent.log").contains("Its handoff note:"));
}

#[test]
fn an_agent_killed_mid_stream_continues_its_session_on_resume() {
    let p = TestProject::new();
    p.write_loop("fix", &check_fix("claude", "test -f fixed", ""));
    let agent_log = p.root().join("agent.log").display().to_string();
    let child = spawn(
        &p,
        &["run", "fix"],
        &[("FAKE_AGENT_MODE", "hang"), ("FAKE_AGENT_LOG", &agent_log)],
    );
    let pid = child.id();
    let (id, dir) = p.wait_for_log(Duration::from_secs(30), |log| {
        count(log, "agent_session") == 1
    });
    signal(pid, "KILL");
    p.wait(child, Duration::from_secs(10));
    // Resume ends what is left of the killed agent, then continues its session.
    let out = dl(
        &p,
        &["resume", &id],
        &[
            ("FAKE_AGENT_MODE", "edit"),
            ("FAKE_AGENT_EDIT", "fixed:ok"),
            ("FAKE_AGENT_LOG", &agent_log),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.render());
    let calls = p.read("agent.log");
    let argv: Vec<&str> = calls.lines().filter(|l| l.starts_with("argv:")).collect();
    assert_eq!(argv.len(), 2, "{calls}");
    assert!(!argv[0].contains("--resume"), "{calls}");
    assert!(
        argv[1].contains(&format!("--resume={CLAUDE_SESSION}")),
        "{calls}"
    );
    assert!(calls.contains("You were interrupted before you finished this task."));
    let log = verified_log(&dir);
    let starts: Vec<&Value> = of_type(&log, "action_started")
        .into_iter()
        .filter(|r| r["state"] == "fix")
        .collect();
    assert_eq!(starts.len(), 2);
    assert!(starts[0].get("continues_session").is_none());
    assert_eq!(starts[1]["continues_session"], CLAUDE_SESSION);
    assert_eq!(starts[0]["idempotency_key"], starts[1]["idempotency_key"]);
    assert_eq!(fix_results(&log)[0]["session_id"], CLAUDE_SESSION);
}

/// A completed run of `check` then `fix` on claude, for the views; returns its id.
fn viewed_run(p: &TestProject, verbose: bool) -> (Output, String) {
    p.write_loop("fix", &check_fix("claude", "test -f fixed", ""));
    let mut args = vec!["run", "fix"];
    if verbose {
        args.push("-v");
    }
    let text = "First line of the answer, long enough that the compact view has to cut it \
                somewhere.\nSecond line.";
    let out = dl(
        p,
        &args,
        &[
            ("FAKE_AGENT_MODE", "edit"),
            ("FAKE_AGENT_EDIT", "fixed:ok"),
            ("FAKE_AGENT_TEXT", text),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, _) = p.only_run();
    (out, id)
}

#[test]
fn run_shows_the_agents_activity_compact_and_whole_with_v() {
    let p = TestProject::new();
    let (out, _) = viewed_run(&p, false);
    insta::assert_snapshot!("run_agent_compact", redact_runs(&out.render()));
    let p = TestProject::new();
    let (out, _) = viewed_run(&p, true);
    insta::assert_snapshot!("run_agent_verbose", redact_runs(&out.render()));
}

#[test]
fn output_renders_an_agent_steps_transcript_and_raw_gives_the_stream() {
    let p = TestProject::new();
    let (_, id) = viewed_run(&p, false);
    let out = p.dloop(&["output", &id, "2"]);
    assert_eq!(out.code, 0, "{}", out.render());
    insta::assert_snapshot!(redact_runs(&out.render()));
    let raw = p.dloop(&["output", &id, "fix", "--raw"]);
    assert_eq!(raw.code, 0, "{}", raw.render());
    let lines: Vec<Value> = raw
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        lines.first().map(|l| &l["type"]),
        Some(&Value::from("system"))
    );
    assert_eq!(
        lines.last().map(|l| &l["type"]),
        Some(&Value::from("result"))
    );
    // The stream as the agent printed it (the output's project path is redacted).
    let kept =
        std::fs::read_to_string(Path::new(&p.run_dirs()[0]).join("output.log")).expect("output");
    let root = std::fs::canonicalize(p.root()).expect("root");
    let kept = kept
        .replace(&root.display().to_string(), "$PROJECT")
        .replace(&p.root().display().to_string(), "$PROJECT");
    assert!(raw.stdout == kept, "{}\n---\n{kept}", raw.stdout);
}

#[test]
fn the_fake_profile_documented_in_inits_config_runs_the_agent_fix_example() {
    let p = TestProject::new();
    let out = p.dloop(&["init"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let config = p.read(".loops/config.yaml");
    // The commented block `# runners:` / `#   fake:` ... up to the next bare `#`.
    let lines: Vec<&str> = config.lines().collect();
    let start = lines
        .windows(2)
        .position(|w| w[0] == "# runners:" && w[1] == "#   fake:")
        .expect("the fake profile's example");
    let block: String = lines[start..]
        .iter()
        .take_while(|l| **l != "#")
        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
        .collect();
    p.write(".loops/config.yaml", &block);
    let examples = repo_root().join("examples");
    p.write(
        "examples/agent-fix.yaml",
        &std::fs::read_to_string(examples.join("agent-fix.yaml")).expect("example"),
    );
    let agent = p.root().join("examples/agents/fake-agent");
    std::fs::create_dir_all(agent.parent().expect("parent")).expect("mkdir");
    std::fs::copy(examples.join("agents/fake-agent"), &agent).expect("copy the fake agent");
    let out = p.dloop(&["run", "examples/agent-fix.yaml"]);
    assert_eq!(out.code, 0, "{block}\n{}", out.render());
}
