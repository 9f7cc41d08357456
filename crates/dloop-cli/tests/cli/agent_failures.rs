//! Agent failures end to end with the real binary and the fake agent CLIs: the rate-limit
//! ladder (waits, a SIGKILL during a wait, a spent ladder with and without a route), an answer
//! that only mentions limits, an agent that cannot log in, and one that never finishes.

use std::time::Duration;

use serde_json::Value;

use crate::agent_runs::{
    calls, check_fix, dl, fix_results, inspect, of_type, passes_on, refs, script_env, scripted,
    spawn,
};
use crate::common::{TestProject, count, signal, verified_log};

#[test]
fn an_agent_rate_limited_twice_then_successful_completes_with_two_waits() {
    let p = scripted("rate_limit\nrate_limit\nedit\n", "{ waits: [1s] }", None);
    let env = script_env(&p);
    let out = dl(&p, &["run", "fix"], &refs(&env));
    assert_eq!(out.code, 0, "{}", out.render());
    let (_, dir) = p.only_run();
    let log = verified_log(&dir);
    let limited = of_type(&log, "rate_limited");
    assert_eq!(limited.len(), 2, "{limited:?}");
    for (n, record) in limited.iter().enumerate() {
        assert_eq!(record["attempt"], n as u64 + 1);
        assert_eq!(record["step"], 2, "the same step");
        assert_eq!(record["wait_ms"], 1000, "the ladder's wait: {record}");
        assert!(record["resume_at"].is_string());
        assert!(
            record["evidence"]
                .as_str()
                .is_some_and(|e| e.contains("limit")),
            "{record}"
        );
    }
    assert_eq!(calls(&p), 3);
    let keys: Vec<&Value> = fix_results(&log)
        .iter()
        .map(|r| &r["step"])
        .collect::<Vec<_>>();
    assert_eq!(keys, [2, 2, 2], "three tries of one step");
    let starts: Vec<&Value> = of_type(&log, "action_started")
        .into_iter()
        .filter(|r| r["state"] == "fix")
        .map(|r| &r["idempotency_key"])
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] == w[1]),
        "one key: {starts:?}"
    );
}

#[test]
fn a_run_killed_during_a_rate_limit_wait_resumes_the_ladder_where_it_was() {
    let p = scripted("rate_limit\nrate_limit\nedit\n", "{ waits: [2s] }", None);
    let env = script_env(&p);
    let child = spawn(&p, &["run", "fix"], &refs(&env));
    let pid = child.id();
    let (id, dir) = p.wait_for_log(Duration::from_secs(30), |log| {
        count(log, "rate_limited") == 1
    });
    signal(pid, "KILL");
    let killed = p.wait(child, Duration::from_secs(10));
    assert_eq!(killed.signal, Some(9));
    assert_eq!(calls(&p), 1, "killed during the first wait");

    let out = dl(&p, &["resume", &id], &refs(&env));
    assert_eq!(out.code, 0, "{}", out.render());
    let log = verified_log(&dir);
    let attempts: Vec<&Value> = of_type(&log, "rate_limited")
        .iter()
        .map(|r| &r["attempt"])
        .collect();
    assert_eq!(attempts, [1, 2], "the ladder goes on, not from zero");
    assert_eq!(calls(&p), 3, "the step ran once more after each wait");
    assert_eq!(count(&log, "run_completed"), 1);
    // The check ran before the fix and after it, never again in between.
    let checks = of_type(&log, "action_started")
        .iter()
        .filter(|r| r["state"] == "check")
        .count();
    assert_eq!(checks, 2);
}

#[test]
fn a_ladder_spent_without_a_route_pauses_and_with_one_routes() {
    let p = scripted("rate_limit\n", "{ waits: [1s], total: 1s }", None);
    let env = script_env(&p);
    let out = dl(&p, &["run", "fix"], &refs(&env));
    assert_eq!(out.code, 3, "{}", out.render());
    let (id, dir) = p.only_run();
    let log = verified_log(&dir);
    let limited = of_type(&log, "rate_limited");
    assert_eq!(limited.len(), 2, "one wait, then spent: {limited:?}");
    assert_eq!(limited[1]["exhausted"], true);
    let json = inspect(&p, &id);
    assert_eq!(json["status"], "paused");
    assert_eq!(json["reason"], "rate_limited");
    assert!(
        out.stderr.contains("still rate limited after 1 wait"),
        "{}",
        out.stderr
    );

    let p = scripted(
        "rate_limit\n",
        "{ waits: [1s], total: 1s }",
        Some("{ rate_limited: later, _: check }"),
    );
    p.write_loop(
        "fix",
        &(p.read(".loops/fix.yaml") + "  later:\n    terminal: failure\n"),
    );
    let env = script_env(&p);
    let out = dl(&p, &["run", "fix"], &refs(&env));
    assert_eq!(out.code, 1, "{}", out.render());
    let (_, dir) = p.only_run();
    let log = verified_log(&dir);
    let moved: Vec<&Value> = of_type(&log, "transitioned")
        .into_iter()
        .filter(|r| r["from"] == "fix")
        .collect();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0]["to"], "later");
    assert_eq!(moved[0]["verdict"], "rate_limited");
    assert_eq!(count(&log, "run_paused"), 0);
}

#[test]
fn an_answer_that_mentions_rate_limits_is_a_success() {
    for runner in ["claude", "codex", "gemini", "opencode"] {
        let p = TestProject::new();
        p.write_loop("fix", &check_fix(runner, &passes_on(2), ""));
        let out = dl(&p, &["run", "fix"], &[("FAKE_AGENT_MODE", "mention_limit")]);
        assert_eq!(out.code, 0, "{runner}: {}", out.render());
        let (_, dir) = p.only_run();
        let log = verified_log(&dir);
        assert_eq!(count(&log, "rate_limited"), 0, "{runner}");
        assert_eq!(fix_results(&log)[0]["agent"]["outcome"], "success");
    }
}

#[test]
fn an_agent_that_is_not_logged_in_pauses_with_its_own_message() {
    let cases = [
        ("claude", "Invalid API key"),
        ("codex", "401 Unauthorized"),
        ("gemini", "Please set an Auth method"),
        ("opencode", "opencode auth login"),
    ];
    for (runner, said) in cases {
        let p = TestProject::new();
        p.write_loop("fix", &check_fix(runner, "test -f fixed", ""));
        let out = dl(&p, &["run", "fix"], &[("FAKE_AGENT_MODE", "auth")]);
        assert_eq!(out.code, 3, "{runner}: {}", out.render());
        assert!(out.stderr.contains(said), "{runner}: {}", out.stderr);
        assert!(
            out.stderr.contains("could not authenticate"),
            "{runner}: {}",
            out.stderr
        );
        let (id, dir) = p.only_run();
        let json = inspect(&p, &id);
        assert_eq!(json["status"], "paused", "{runner}");
        assert_eq!(json["reason"], "agent_error", "{runner}");
        assert!(
            json["message"].as_str().is_some_and(|m| m.contains(said)),
            "{runner}: {json}"
        );
        let shown = p.dloop(&["inspect", &id]);
        assert!(shown.stdout.contains(said), "{runner}: {}", shown.stdout);
        let log = verified_log(&dir);
        assert_eq!(count(&log, "agent_unavailable"), 1, "{runner}");
        assert_eq!(count(&log, "evaluated"), 1, "only the check was judged");
    }
}

#[test]
fn an_agent_that_never_finishes_ends_within_its_timeout_and_is_no_success() {
    // The state's wall clock, then the profile's idle time limit from config.yaml.
    let timed = TestProject::new();
    timed.write_loop(
        "fix",
        &check_fix("claude", "test -f fixed", "    timeout: 1s\n"),
    );
    let idle = TestProject::new();
    idle.write(
        ".loops/config.yaml",
        "runners:\n  claude:\n    idle_timeout: 1s\n",
    );
    idle.write_loop("fix", &check_fix("claude", "test -f fixed", ""));
    for (p, what) in [(timed, "wall-clock"), (idle, "idle")] {
        let child = spawn(&p, &["run", "fix"], &[("FAKE_AGENT_MODE", "hang")]);
        let out = p.wait(child, Duration::from_secs(30));
        assert_eq!(out.code, 1, "{what}: {}", out.render());
        assert!(
            out.stderr
                .contains(&format!("ended by its {what} time limit")),
            "{what}: {}",
            out.stderr
        );
        let (_, dir) = p.only_run();
        let log = verified_log(&dir);
        let fix = fix_results(&log)[0];
        assert_ne!(fix["agent"]["outcome"], "success", "{fix}");
        let verdicts: Vec<&Value> = of_type(&log, "evaluated")
            .into_iter()
            .filter(|r| r["state"] == "fix")
            .map(|r| &r["verdict"])
            .collect();
        assert_eq!(verdicts, ["error"], "{what}");
        assert_eq!(count(&log, "run_failed"), 1);
    }
}
