//! `dloop status`: live and resumable runs; `--all` adds finished ones.

use crate::common::{
    RUN_KEYS, TestProject, first_object_keys, project_with_loops, redact_runs, run_loop,
};

/// A completed, a paused and a crashed run, in that order.
fn three_runs(p: &TestProject) -> (String, String, String) {
    let completed = run_loop(p, &["quick"], 0);
    let paused = run_loop(p, &["twostep", "--max-steps", "1"], 3);
    let before = p.run_ids();
    // The runner SIGKILLs itself after recording an action's intent: the log says running,
    // nobody holds the lock.
    let out = p.dloop_env(&["run", "quick"], &[("DLOOP_CRASH_AT", "after_intent")]);
    assert_eq!(out.code, -1, "killed by a signal: {}", out.render());
    let crashed = crate::common::new_run(p, &before);
    (completed, paused, crashed)
}

#[test]
fn lists_paused_and_crashed_runs_and_hides_completed_ones() {
    let p = project_with_loops();
    let (completed, paused, crashed) = three_runs(&p);
    let out = p.dloop(&["status"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(!out.stdout.contains(&completed));
    insta::assert_snapshot!(redact_runs(&out.render()));

    let out = p.dloop(&["status", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(first_object_keys(&out.stdout)[..RUN_KEYS.len()], *RUN_KEYS);
    let rows = out.json();
    let rows = rows.as_array().expect("array");
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().expect("id")).collect();
    assert_eq!(ids, [crashed.as_str(), paused.as_str()], "newest first");
    assert_eq!(rows[0]["status"], "crashed");
    assert_eq!(rows[0]["loop"], "quick");
    assert_eq!(rows[0]["live"], false);
    assert_eq!(rows[1]["status"], "paused");
    assert_eq!(rows[1]["reason"], "max_steps");
    assert_eq!(rows[1]["state"], "b");
    assert_eq!(rows[1]["step"], 1);
    assert_eq!(rows[1]["loop"], "twostep");
    assert_eq!(rows[1]["captures"]["first"]["excerpt"], "one\n");
    assert_eq!(rows[1]["states"]["a"]["visits"], 1);
}

#[test]
fn all_adds_finished_runs() {
    let p = project_with_loops();
    let (completed, paused, crashed) = three_runs(&p);
    let out = p.dloop(&["status", "--all", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let rows = out.json();
    let got: Vec<(&str, &str)> = rows
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id"),
                r["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (crashed.as_str(), "crashed"),
            (paused.as_str(), "paused"),
            (completed.as_str(), "completed")
        ]
    );
    let out = p.dloop(&["status", "--all"]);
    assert_eq!(out.code, 0, "{}", out.render());
    insta::assert_snapshot!(redact_runs(&out.render()));
}

#[test]
fn no_runs() {
    let p = project_with_loops();
    let out = p.dloop(&["status"]);
    insta::assert_snapshot!(out.render());
    let out = p.dloop(&["status", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.json(), serde_json::json!([]));
}
