//! Replay edges found by an adversarial review, through the real binary: a replay stopped by a
//! signal before it matched or diverged. Each test names what broke before its fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{TestProject, poll, signal};

/// A loop whose run takes `n` steps of `true` (its replay takes a while to walk).
fn long_loop(n: u32) -> String {
    format!(
        "initial: a\nlimits:\n  max_steps: {}\nstates:\n  a:\n    shell: \"true\"\n    evaluate:\n      type: numeric\n      source: \"n=${{state.visit}}\"\n      key: n\n      operator: ge\n      target: {n}\n    on: {{ success: done, failure: a }}\n  done:\n    terminal: success\n",
        n + 10
    )
}

/// Every `events.jsonl` under `dir`, at any depth.
fn logs_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            found.extend(logs_under(&path));
        } else if path.file_name().is_some_and(|n| n == "events.jsonl") {
            found.push(path);
        }
    }
    found
}

/// Waits until a log under `dir` other than `except`'s holds at least `records` lines.
fn wait_for_progress(dir: &Path, except: &str, records: usize) {
    let seen = poll(Duration::from_secs(60), || {
        logs_under(dir)
            .into_iter()
            .filter(|log| !log.to_string_lossy().contains(except))
            .any(|log| std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= records))
            .then_some(())
    });
    assert!(
        seen.is_some(),
        "the replay made no progress under {}",
        dir.display()
    );
}

/// A project with `long` run once (400 steps); returns it and the run id.
fn recorded() -> (TestProject, String) {
    let p = TestProject::new();
    p.write_loop("long", &long_loop(400));
    let out = p.dloop(&["run", "long"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, _) = p.only_run();
    (p, id)
}

#[test]
fn a_plain_replay_stopped_by_sigterm_says_stopped_and_leaves_nothing() {
    // It used to report a divergence (`the replay ended paused ... where the recorded run ended
    // completed`) and exit 5, as if the loop had left the record.
    let (p, id) = recorded();
    let child = p.spawn(&["replay", &id, "--json"], &[]);
    let pid = child.id();
    wait_for_progress(&p.root().join(".loops/.dloop/scratch"), &id, 20);
    signal(pid, "TERM");
    let out = p.wait(child, Duration::from_secs(60));
    assert_eq!(out.code, 3, "{}", out.render());
    let json = out.json();
    assert_eq!(json["outcome"], "stopped", "{json}");
    assert!(json["divergence"].is_null(), "{json}");
    assert_eq!(json["end"]["status"], "paused", "{json}");
    assert_eq!(p.run_dirs().len(), 1, "only the source remains");
    assert!(logs_under(&p.root().join(".loops/.dloop/scratch")).is_empty());
}

#[test]
fn a_live_replay_stopped_before_it_diverged_is_not_reported_as_matched() {
    // It used to say `matched: the replay reached the recorded end` while the run it made was
    // paused part way.
    let (p, id) = recorded();
    let child = p.spawn(&["replay", &id, "--live"], &[]);
    let pid = child.id();
    wait_for_progress(&p.root().join(".loops/.dloop/runs"), &id, 20);
    signal(pid, "TERM");
    let out = p.wait(child, Duration::from_secs(60));
    assert_eq!(out.code, 3, "{}", out.render());
    assert!(!out.stdout.contains("matched"), "{}", out.stdout);
    assert!(out.stdout.contains("stopped at step"), "{}", out.stdout);
    let live: Vec<String> = p.run_ids().into_iter().filter(|run| *run != id).collect();
    assert_eq!(live.len(), 1, "{live:?}");
    let status = p.dloop(&["inspect", &live[0], "--json"]).json();
    assert_eq!(status["status"], "paused", "{status}");
    // It is a run like any: resume finishes it for real.
    let out = p.dloop(&["resume", &live[0]]);
    assert_eq!(out.code, 0, "{}", out.render());
}
