//! `dloop history`: ended runs, newest first, `--limit`, a loop filter.

use crate::common::{RUN_KEYS, first_object_keys, project_with_loops, redact_runs, run_loop};

#[test]
fn newest_first_with_limit_and_loop_filter() {
    let p = project_with_loops();
    let first = run_loop(&p, &["quick"], 0);
    let failed = run_loop(&p, &["broken"], 1);
    let _paused = run_loop(&p, &["twostep", "--max-steps", "1"], 3);
    let last = run_loop(&p, &["quick"], 0);

    let out = p.dloop(&["history", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let keys = first_object_keys(&out.stdout);
    assert_eq!(keys[..RUN_KEYS.len()], *RUN_KEYS);
    assert_eq!(keys[RUN_KEYS.len()..], ["outcome", "finished_at"]);
    let rows = out.json();
    let got: Vec<(&str, &str)> = rows
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id"),
                r["outcome"].as_str().expect("outcome"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (last.as_str(), "completed"),
            (failed.as_str(), "failed"),
            (first.as_str(), "completed")
        ],
        "paused runs are not history; newest first"
    );
    assert_eq!(rows[1]["status"], "failed");
    assert_eq!(rows[1]["state"], "bad");
    assert!(
        rows[0]["finished_at"]
            .as_str()
            .expect("finished_at")
            .ends_with('Z')
    );

    let out = p.dloop(&["history", "--limit", "2", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let ids: Vec<String> = out
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, [last.clone(), failed.clone()]);

    let out = p.dloop(&["history", "quick", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let ids: Vec<String> = out
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, [last, first]);

    let out = p.dloop(&["history"]);
    assert_eq!(out.code, 0, "{}", out.render());
    insta::assert_snapshot!(redact_runs(&out.render()));
}

#[test]
fn empty_history() {
    let p = project_with_loops();
    let out = p.dloop(&["history"]);
    insta::assert_snapshot!(out.render());
}
