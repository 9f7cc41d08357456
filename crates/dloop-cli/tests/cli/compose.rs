//! Composition with the real binary: the `llm` judge as a `command` profile (a script reading
//! the judge's prompt on stdin), SIGKILL while the judge thinks, and spend budgets over the fake
//! `claude` of tests/fixtures/agents (which reports $0.0421 a call).

use std::time::Duration;

use crate::common::{TestProject, count, poll, repo_root, signal, verified_log};

const CONFIG: &str = "runners:\n  worker:\n    base: command\n    command: [bash, worker.sh]\n  judge:\n    base: command\n    command: [bash, judge.sh]\n";

/// The action: counts its runs, answers with a test summary.
const WORKER: &str = "cat >/dev/null\necho run >> actions.log\necho 'Edited src/lib.rs'\necho 'test result: ok. 3 passed'\n";

/// The judge: notes its pid, waits (until killed) while `judge.wait` exists, then answers with
/// the contents of `judge.answer`.
const JUDGE: &str = "cat >/dev/null\necho $$ >> judge.pids\nif [ -e judge.wait ]; then exec sleep 60; fi\ncat judge.answer\n";

const LOOP: &str = "initial: fix\nstates:\n  fix:\n    prompt: Fix the tests\n    runner: worker\n    evaluate: { type: llm, runner: judge, min_confidence: 0.7 }\n    on: { success: done, failure: failed, partial: failed, blocked: failed, error: broken }\n  done:\n    terminal: success\n  failed:\n    terminal: failure\n  broken:\n    terminal: failure\n";

fn judged_project(answer: &str) -> TestProject {
    let p = TestProject::new();
    p.write(".loops/config.yaml", CONFIG);
    p.write("worker.sh", WORKER);
    p.write("judge.sh", JUDGE);
    p.write("judge.answer", answer);
    p.write_loop("fix", LOOP);
    p
}

fn lines(p: &TestProject, rel: &str) -> Vec<String> {
    std::fs::read_to_string(p.root().join(rel))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_judge_routes_on_evidence_it_quotes_from_the_output() {
    let cases = [
        (
            r#"{"verdict":"success","confidence":0.9,"evidence":["test result: ok. 3 passed"]}"#,
            0,
            "done",
        ),
        (
            r#"{"verdict":"success","confidence":0.9,"evidence":["all 40 tests pass"]}"#,
            1,
            "failed",
        ),
        (r#"{"verdict":"success","confidence":0.9}"#, 1, "failed"),
        ("Sure, looks fine.", 1, "broken"),
    ];
    for (answer, code, end) in cases {
        let p = judged_project(answer);
        let out = p.dloop(&["run", "fix"]);
        assert_eq!(out.code, code, "{answer}\n{}", out.render());
        let (_, dir) = p.only_run();
        let log = verified_log(&dir);
        let last = log.last().expect("records");
        assert_eq!(last["state"], end, "{answer}");
        let judged = log
            .iter()
            .find(|r| r["type"] == "judged")
            .expect("a judged record");
        if end == "broken" {
            assert_eq!(judged["raw_answer"], answer, "the raw answer is kept");
        }
    }
}

#[test]
fn sigkill_while_judging_then_resume_judges_again_and_never_reruns_the_action() {
    let p = judged_project(
        r#"{"verdict":"success","confidence":0.9,"evidence":["Edited src/lib.rs"]}"#,
    );
    p.write("judge.wait", "");
    let child = p.spawn(&["run", "fix"], &[]);
    let pid = child.id();
    let judge_pid = poll(Duration::from_secs(30), || {
        lines(&p, "judge.pids").first()?.parse::<u32>().ok()
    })
    .expect("the judge started");
    signal(pid, "KILL");
    let _ = p.wait(child, Duration::from_secs(30));
    signal(judge_pid, "KILL");
    let (id, dir) = p.only_run();
    let log = verified_log(&dir);
    assert_eq!(log.last().expect("records")["type"], "action_finished");
    std::fs::remove_file(p.root().join("judge.wait")).expect("rm");
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(lines(&p, "actions.log").len(), 1, "the action ran once");
    assert_eq!(lines(&p, "judge.pids").len(), 2, "the judge ran again");
    let log = verified_log(&dir);
    assert_eq!(count(&log, "action_started"), 1);
    assert_eq!(count(&log, "judged"), 1);
}

/// Three prompt states on the fake claude ($0.0421 a call), judged by exit status.
const SPEND: &str = "initial: a\nrunner: claude\nlimits: { max_cost_usd: 0.1 }\nstates:\n  a:\n    prompt: one\n    next: b\n  b:\n    prompt: two\n    next: c\n  c:\n    prompt: three\n    on: { success: done, budget_exceeded: over, _: over }\n  over:\n    terminal: failure\n  done:\n    terminal: success\n";

fn fake_path() -> String {
    format!(
        "{}:{}",
        repo_root().join("tests/fixtures/agents").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn a_budget_pauses_at_the_first_step_over_it_and_resume_max_cost_usd_continues() {
    let p = TestProject::new();
    p.write_loop("spend", &SPEND.replace("budget_exceeded: over, ", ""));
    let path = fake_path();
    let env = [("PATH", path.as_str()), ("FAKE_AGENT_MODE", "ok")];
    let out = p.dloop_env(&["run", "spend", "--no-llm"], &env);
    assert_eq!(out.code, 3, "{}", out.render());
    assert!(
        out.render().contains("max_cost_usd ($0.1000) is exceeded"),
        "{}",
        out.render()
    );
    let (id, dir) = p.only_run();
    let log = verified_log(&dir);
    let paused = log.last().expect("records");
    assert_eq!(paused["type"], "run_paused");
    assert_eq!(paused["reason"], "budget");
    assert_eq!(count(&log, "action_started"), 3, "$0.1263 after the third");
    let inspect = p.dloop(&["inspect", &id, "--json"]).json();
    assert_eq!(inspect["reason"], "budget");
    let out = p.dloop_env(&["resume", &id, "--max-cost-usd", "1"], &env);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(count(&verified_log(&dir), "action_started"), 3);
}

#[test]
fn a_budget_exceeded_route_is_taken_instead_of_pausing() {
    let p = TestProject::new();
    p.write_loop("spend", SPEND);
    let path = fake_path();
    let env = [("PATH", path.as_str()), ("FAKE_AGENT_MODE", "ok")];
    let out = p.dloop_env(&["run", "spend", "--no-llm"], &env);
    assert_eq!(out.code, 1, "{}", out.render());
    let (_, dir) = p.only_run();
    let log = verified_log(&dir);
    assert!(log.iter().any(|r| r["type"] == "transitioned"
        && r["to"] == "over"
        && r["verdict"] == "budget_exceeded"));
}
