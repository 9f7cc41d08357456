//! `dloop logs`: the timeline, `--json` lines, `--type` filters, and `--follow` on a live run.

use std::time::{Duration, Instant};

use crate::common::{project_with_loops, redact_runs, run_loop};

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn json_lines_parse_with_seq_from_one() {
    let p = project_with_loops();
    let id = run_loop(&p, &["twostep"], 0);
    let out = p.dloop(&["logs", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let records = json_lines(&out.stdout);
    assert!(records.len() > 5, "{}", out.stdout);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["seq"], i as u64 + 1);
        assert!(record["ts"].is_string());
        assert!(record.get("crc").is_none() && record.get("_more").is_none());
    }
    assert_eq!(records[0]["type"], "run_started");
    assert_eq!(records.last().expect("records")["type"], "run_completed");
}

#[test]
fn type_filter_keeps_only_those_records() {
    let p = project_with_loops();
    let id = run_loop(&p, &["twostep"], 0);
    let out = p.dloop(&["logs", &id, "--json", "--type", "transitioned"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let records = json_lines(&out.stdout);
    let moves: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            assert_eq!(r["type"], "transitioned");
            (
                r["from"].as_str().expect("from"),
                r["to"].as_str().expect("to"),
            )
        })
        .collect();
    assert_eq!(moves, [("a", "b"), ("b", "done")]);

    let out = p.dloop(&[
        "logs",
        "twostep",
        "--type",
        "run_started",
        "--type",
        "run_completed",
    ]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
}

#[test]
fn unknown_type_is_a_usage_error_listing_valid_ones() {
    let p = project_with_loops();
    let id = run_loop(&p, &["quick"], 0);
    let out = p.dloop(&["logs", &id, "--type", "transition"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("transitioned"), "{}", out.stderr);
    assert!(out.stderr.contains("run_started"), "{}", out.stderr);
}

#[test]
fn readable_timeline() {
    let p = project_with_loops();
    let _ = run_loop(&p, &["broken"], 1);
    let out = p.dloop(&["logs", "broken"]);
    assert_eq!(out.code, 0, "{}", out.render());
    insta::assert_snapshot!(redact_runs(&out.render()));
}

#[test]
fn unknown_run_says_what_to_do() {
    let p = project_with_loops();
    let out = p.dloop(&["logs", "nope"]);
    assert_eq!(out.code, 2, "{}", out.render());
    insta::assert_snapshot!(out.render());
}

#[test]
fn follow_a_live_run_until_it_ends() {
    let p = project_with_loops();
    let mut runner = p.command(&["run", "slow"]).spawn().expect("start a run");
    // Wait for the run to exist and be live (its first record is written).
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        if let Some(id) = p.run_ids().pop()
            && p.dloop(&["logs", &id, "--json", "--type", "action_started"])
                .stdout
                .contains("action_started")
        {
            break id;
        }
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let started = Instant::now();
    let out = p.dloop(&["logs", &id, "--follow", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(started.elapsed() < Duration::from_secs(10));
    let status = runner.wait().expect("runner exits");
    assert_eq!(status.code(), Some(0));
    let records = json_lines(&out.stdout);
    let last = records.last().expect("records");
    assert_eq!(last["type"], "run_completed", "ends with the final record");
    let all = json_lines(&p.dloop(&["logs", &id, "--json"]).stdout);
    assert_eq!(records.len(), all.len(), "every record printed once");
}

#[test]
fn every_record_type_a_sub_loop_run_holds_is_a_valid_filter() {
    let p = crate::common::TestProject::new();
    p.write_loop(
        "parent",
        "initial: sub\nstates:\n  sub:\n    loop: child\n    next: done\n  done:\n    terminal: success\n",
    );
    p.write_loop(
        "child",
        "initial: a\nstates:\n  a:\n    shell: echo hi\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "parent", "--no-llm"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let ids = p.run_ids();
    let parent = ids
        .iter()
        .find(|i| i.starts_with("parent-"))
        .expect("parent");
    let child = ids.iter().find(|i| i.starts_with("child-")).expect("child");
    for (run, ty) in [
        (parent, "sub_loop_started"),
        (parent, "run_options"),
        (child, "sub_loop_of"),
        (child, "run_options"),
    ] {
        let out = p.dloop(&["logs", run, "--json", "--type", ty]);
        assert_eq!(out.code, 0, "--type {ty}: {}", out.render());
        let records = json_lines(&out.stdout);
        assert_eq!(records.len(), 1, "--type {ty}: {}", out.stdout);
        assert_eq!(records[0]["type"], ty);
        // The readable timeline filters the same way.
        let out = p.dloop(&["logs", run, "--type", ty]);
        assert_eq!(out.code, 0, "{}", out.render());
        assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
        assert!(out.stdout.contains(ty), "{}", out.stdout);
    }
    // Types this run does not hold are still valid filters (nothing printed).
    for ty in [
        "judged",
        "agent_session",
        "agent_unavailable",
        "run_rewound",
    ] {
        let out = p.dloop(&["logs", parent, "--json", "--type", ty]);
        assert_eq!(out.code, 0, "--type {ty}: {}", out.render());
        assert_eq!(out.stdout, "", "--type {ty}");
    }
}
