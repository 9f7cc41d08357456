//! Issue 10: scope locks and the wait queue, with real processes started at once.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use crate::common::{TestProject, poll, read_log_lenient, signal, verified_log};

const LIMIT: Duration = Duration::from_secs(60);

/// A loop on scope `src` whose action waits until the file `release` exists.
fn gated_loop(extra: &str) -> String {
    format!(
        "{extra}initial: work\nstates:\n  work:\n    shell: \"while [ ! -e release ]; do sleep 0.05; done\"\n    on: {{_: done}}\n  done:\n    terminal: success\n"
    )
}

fn ts_ms(record: &serde_json::Value) -> i64 {
    let text = record["ts"].as_str().expect("ts");
    // RFC 3339 UTC with milliseconds: compare as text-derived millis of the day plus date.
    let (date, time) = text.split_once('T').expect("T");
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: i64 = parts.next().expect("h").parse().expect("h");
    let m: i64 = parts.next().expect("m").parse().expect("m");
    let s: f64 = parts.next().expect("s").parse().expect("s");
    let day: i64 = date.replace('-', "").parse().expect("date");
    day * 86_400_000 + (h * 3600 + m * 60) * 1000 + (s * 1000.0).round() as i64
}

/// The run folder whose log has a record of type `ty`, among those not in `except`.
fn run_with(p: &TestProject, ty: &str, except: &[std::path::PathBuf]) -> std::path::PathBuf {
    poll(LIMIT, || {
        p.run_dirs().into_iter().find(|d| {
            !except.contains(d)
                && read_log_lenient(&d.join("events.jsonl"))
                    .iter()
                    .any(|r| r["type"] == ty)
        })
    })
    .unwrap_or_else(|| panic!("no run reached `{ty}`"))
}

fn id_of(dir: &Path) -> String {
    dir.file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn ten_runs_on_one_scope_one_runs_and_nine_are_refused_naming_it() {
    let p = TestProject::new();
    p.write_loop("gate", &gated_loop("scope: [src]\n"));
    let children: Vec<Child> = (0..10).map(|_| p.spawn(&["run", "gate"], &[])).collect();
    // The nine refused ones end by themselves; the winner waits for `release`.
    let dir = run_with(&p, "action_started", &[]);
    let winner = id_of(&dir);
    let mut outputs = Vec::new();
    let mut running = children;
    // Release only once the nine have been refused (they exit 2 on their own).
    let refused = poll(LIMIT, || {
        let mut done = 0;
        for child in &mut running {
            if child.try_wait().ok().flatten().is_some() {
                done += 1;
            }
        }
        (done == 9).then_some(())
    });
    assert!(refused.is_some(), "nine runs should end on their own");
    std::fs::write(p.root().join("release"), "").expect("release");
    for child in running {
        outputs.push(p.wait(child, LIMIT));
    }
    let ok: Vec<_> = outputs.iter().filter(|o| o.code == 0).collect();
    let refused: Vec<_> = outputs.iter().filter(|o| o.code == 2).collect();
    assert_eq!((ok.len(), refused.len()), (1, 9));
    for out in refused {
        assert!(
            out.stderr
                .contains(&format!("overlaps run {winner} (loop `gate`, scope src)"))
                && out.stderr.contains("--queue"),
            "{}",
            out.stderr
        );
    }
    // A refused run leaves no folder behind.
    assert_eq!(p.run_dirs().len(), 1);
}

#[test]
fn queued_runs_all_complete_one_at_a_time() {
    let p = TestProject::new();
    p.write_loop(
        "turns",
        "scope: [src/lib, docs]\ninitial: work\nstates:\n  work:\n    shell: \"sleep 0.05\"\n    on: {_: done}\n  done:\n    terminal: success\n",
    );
    let children: Vec<Child> = (0..10)
        .map(|_| p.spawn(&["run", "turns", "--queue"], &[]))
        .collect();
    for child in children {
        let out = p.wait(child, LIMIT);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let dirs = p.run_dirs();
    assert_eq!(dirs.len(), 10);
    let mut intervals: Vec<(i64, i64)> = dirs
        .iter()
        .map(|dir| {
            let records = verified_log(dir);
            let start = records
                .iter()
                .find(|r| r["type"] == "scope_acquired")
                .map(ts_ms)
                .expect("scope_acquired");
            let last = records.last().expect("records");
            assert_eq!(last["type"], "run_completed");
            (start, ts_ms(last))
        })
        .collect();
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "active intervals overlap: {intervals:?}"
        );
    }
}

#[test]
fn a_killed_waiter_leaves_the_queue_and_status_shows_waiters() {
    let p = TestProject::new();
    p.write_loop("gate", &gated_loop("scope: [src]\n"));
    let holder = p.spawn(&["run", "gate"], &[]);
    let holder_dir = run_with(&p, "action_started", &[]);
    let doomed = p.spawn(&["run", "gate", "--queue"], &[]);
    let doomed_dir = run_with(&p, "scope_waiting", &[]);
    let next = p.spawn(&["run", "gate", "--queue"], &[]);
    let next_dir = run_with(&p, "scope_waiting", std::slice::from_ref(&doomed_dir));
    let status = p.dloop(&["status"]);
    let waiting = status
        .stdout
        .lines()
        .filter(|l| l.contains("waiting (scope src)"))
        .count();
    assert_eq!(waiting, 2, "{}", status.stdout);
    assert!(
        status
            .stdout
            .contains(&format!("behind run {}", id_of(&holder_dir)))
    );
    signal(doomed.id(), "KILL");
    let out = p.wait(doomed, LIMIT);
    assert_eq!(out.signal, Some(9));
    let status = p.dloop(&["status"]);
    let line = status
        .stdout
        .lines()
        .find(|l| l.starts_with(&id_of(&doomed_dir)))
        .expect("the killed waiter is listed")
        .to_owned();
    assert!(line.contains("crashed"), "{line}");
    std::fs::write(p.root().join("release"), "").expect("release");
    assert_eq!(p.wait(holder, LIMIT).code, 0);
    let out = p.wait(next, LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = verified_log(&next_dir);
    assert_eq!(records.last().expect("records")["type"], "run_completed");
}

#[test]
fn twenty_runs_without_lock_get_twenty_folders() {
    let p = TestProject::new();
    p.write_loop(
        "quick",
        "scope: [src]\nsingleton: true\ninitial: work\nstates:\n  work:\n    shell: \"true\"\n    on: {_: done}\n  done:\n    terminal: success\n",
    );
    let children: Vec<Child> = (0..20)
        .map(|_| p.spawn(&["run", "quick", "--no-lock"], &[]))
        .collect();
    for child in children {
        let out = p.wait(child, LIMIT);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let dirs = p.run_dirs();
    assert_eq!(dirs.len(), 20);
    for dir in dirs {
        let records = verified_log(&dir);
        assert_eq!(records.last().expect("records")["type"], "run_completed");
        assert!(!records.iter().any(|r| r["type"] == "scope_acquired"));
    }
}

#[test]
fn singleton_queue_timeout_pauses_and_resume_takes_the_scope_again() {
    let p = TestProject::new();
    p.write_loop("solo", &gated_loop("singleton: true\n"));
    let holder = p.spawn(&["run", "solo"], &[]);
    let holder_dir = run_with(&p, "action_started", &[]);
    let out = p.dloop(&["run", "solo", "--queue", "--queue-timeout", "200ms"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("paused (queue_timeout)"),
        "{}",
        out.stderr
    );
    let waiter = p
        .run_dirs()
        .into_iter()
        .find(|d| *d != holder_dir)
        .expect("the waiter's run");
    // Resume takes the scope again: refused while the holder runs, with the same message.
    let out = p.dloop(&["resume", &id_of(&waiter)]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("overlaps run {}", id_of(&holder_dir))),
        "{}",
        out.stderr
    );
    std::fs::write(p.root().join("release"), "").expect("release");
    assert_eq!(p.wait(holder, LIMIT).code, 0);
    let out = p.dloop(&["resume", &id_of(&waiter), "--queue"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn a_scope_outside_the_project_is_refused() {
    let p = TestProject::new();
    p.write_loop("far", &gated_loop("scope: [../elsewhere]\n"));
    let out = p.dloop(&["run", "far"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("outside the project root"),
        "{}",
        out.stderr
    );
    assert!(p.run_dirs().is_empty());
}
