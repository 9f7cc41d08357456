//! `dloop gc`: deletes old finished runs only; `--dry-run` deletes nothing.

use std::time::{Duration, Instant};

use crate::common::{TestProject, project_with_loops, run_loop};

/// `gc --older-than 1ms --dry-run` once it lists `want` runs (their last record must be at
/// least 1 ms old; poll rather than sleep).
fn dry_run_until(p: &TestProject, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = p.dloop(&["gc", "--older-than", "1ms", "--dry-run"]);
        assert_eq!(out.code, 0, "{}", out.render());
        let ids: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
        if ids.len() == want || Instant::now() > deadline {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn deletes_only_old_finished_runs() {
    let p = project_with_loops();
    let completed = run_loop(&p, &["quick"], 0);
    let failed = run_loop(&p, &["broken"], 1);
    let paused = run_loop(&p, &["twostep", "--max-steps", "1"], 3);

    // The default, 7 days, spares runs that just ended.
    let out = p.dloop(&["gc", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout, "");

    let mut expected = vec![completed.clone(), failed.clone()];
    expected.sort();
    assert_eq!(dry_run_until(&p, 2), expected);
    assert_eq!(p.run_ids().len(), 3, "a dry run deletes nothing");

    let out = p.dloop(&["gc", "--older-than", "1ms"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let deleted: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(deleted, expected);
    assert!(
        out.stderr.contains("deleted 2 finished runs"),
        "{}",
        out.stderr
    );
    assert_eq!(
        p.run_ids(),
        std::slice::from_ref(&paused),
        "the paused run stays"
    );
    let status = p.dloop(&["status", "--json"]);
    assert_eq!(status.json()[0]["id"], paused.as_str());
}

#[test]
fn never_deletes_crashed_runs() {
    let p = project_with_loops();
    let out = p.dloop_env(&["run", "quick"], &[("DLOOP_CRASH_AT", "after_intent")]);
    assert_eq!(out.code, -1, "{}", out.render());
    std::thread::sleep(Duration::from_millis(5));
    let out = p.dloop(&["gc", "--older-than", "1ms"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout, "");
    assert_eq!(p.run_ids().len(), 1);
}

#[test]
fn bad_duration_is_a_usage_error() {
    let p = project_with_loops();
    let out = p.dloop(&["gc", "--older-than", "7"]);
    assert_eq!(out.code, 2, "{}", out.render());
}
