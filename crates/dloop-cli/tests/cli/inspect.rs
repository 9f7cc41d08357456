//! `dloop inspect`: one run; `--json` agrees with the log.

use crate::common::{project_with_loops, redact_runs, run_loop};

#[test]
fn json_agrees_with_the_log() {
    let p = project_with_loops();
    let id = run_loop(&p, &["twostep", "--max-steps", "1"], 3);
    let out = p.dloop(&["inspect", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let run = out.json();

    let logs = p.dloop(&["logs", &id, "--json"]);
    assert_eq!(logs.code, 0, "{}", logs.render());
    let records: Vec<serde_json::Value> = logs
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    // Fold the records ourselves.
    let of_type = |t: &'static str| records.iter().filter(move |r| r["type"] == t);
    let transitions = of_type("transitioned").count() as u64;
    let last_step = of_type("state_entered")
        .map(|r| r["step"].as_u64().expect("step"))
        .max()
        .expect("a state was entered");
    let last_move = of_type("transitioned").next_back().expect("a transition");
    let paused = of_type("run_paused").next_back().expect("paused");

    assert_eq!(run["id"], id.as_str());
    assert_eq!(run["loop"], "twostep");
    assert_eq!(run["status"], "paused");
    assert_eq!(run["reason"], paused["reason"]);
    assert_eq!(run["step"], last_step);
    assert_eq!(run["step"], transitions);
    assert_eq!(run["state"], last_move["to"]);
    assert_eq!(run["started_at"], records[0]["ts"]);
    assert_eq!(
        run["states"]["a"]["visits"],
        of_type("state_entered")
            .filter(|r| r["state"] == "a")
            .count() as u64
    );
    assert_eq!(run["captures"]["first"]["excerpt"], "one\n");
    assert_eq!(run["max_steps"], 1);
    assert_eq!(run["sessions"], 1);
    assert_eq!(run["live"], false);
}

#[test]
fn paused_run_says_what_to_do_next() {
    let p = project_with_loops();
    let _ = run_loop(&p, &["twostep", "--max-steps", "1"], 3);
    let out = p.dloop(&["inspect", "twostep"]);
    assert_eq!(out.code, 0, "{}", out.render());
    insta::assert_snapshot!(redact_runs(&out.render()));
}

#[test]
fn loop_name_means_its_newest_run() {
    let p = project_with_loops();
    let _ = run_loop(&p, &["quick"], 0);
    let newest = run_loop(&p, &["quick"], 0);
    let out = p.dloop(&["inspect", "quick", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.json()["id"], newest.as_str());
}

#[test]
fn unknown_run_is_a_usage_error() {
    let p = project_with_loops();
    let out = p.dloop(&["inspect", "nope"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stderr.contains("no run matches `nope`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
}
