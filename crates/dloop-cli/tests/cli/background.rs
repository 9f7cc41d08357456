//! Issue 10: background runs (`-b`), `--notify`, and what `status` says about them.

use std::path::Path;
use std::time::Duration;

use crate::common::{TestProject, poll, process_alive, signal, verified_log};

const LIMIT: Duration = Duration::from_secs(60);

/// The pid of the process holding the run's lock (`pid host started_at`).
fn runner_pid(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("lock"))
        .expect("lock")
        .split_whitespace()
        .next()
        .expect("pid")
        .parse()
        .expect("pid number")
}

/// Processes whose environment carries `DLOOP_RUN_ID=id`.
fn processes_of(id: &str) -> Vec<u32> {
    let needle = format!("DLOOP_RUN_ID={id}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) && process_alive(pid) {
            found.push(pid);
        }
    }
    found
}

fn status_of(p: &TestProject, id: &str) -> String {
    let out = p.dloop(&["status", "--all", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    runs.as_array()
        .expect("array")
        .iter()
        .find(|r| r["id"] == id)
        .map(|r| r["status"].as_str().expect("status").to_owned())
        .unwrap_or_default()
}

fn wait_status(p: &TestProject, id: &str, want: &str) {
    let reached = poll(LIMIT, || (status_of(p, id) == want).then_some(()));
    assert!(reached.is_some(), "run {id} never became {want}");
}

#[test]
fn a_background_run_is_stopped_resumed_and_leaves_no_process() {
    let p = TestProject::new();
    p.write_loop(
        "bg",
        "scope: [src]\ninitial: work\nstates:\n  work:\n    shell: \"while [ ! -e release ]; do sleep 0.05; done\"\n    on: {_: done}\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&[
        "run",
        "bg",
        "-b",
        "--notify",
        "echo \"$DLOOP_STATUS $DLOOP_REASON\" >> notified",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.stdout.trim().to_owned();
    let (only, dir) = p.only_run();
    assert_eq!(id, only);
    // `-b` returned once the child held its run: it is running now, not crashed.
    assert_eq!(status_of(&p, &id), "running");
    // A second run on the scope is refused by the background one.
    let refused = p.dloop(&["run", "bg"]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains(&format!("overlaps run {id}")),
        "{}",
        refused.stderr
    );

    assert_eq!(p.dloop(&["stop", &id]).code, 0);
    wait_status(&p, &id, "paused");
    let runner = runner_pid(&dir);
    assert!(poll(LIMIT, || (!process_alive(runner)).then_some(())).is_some());
    assert_eq!(p.read("notified"), "paused stopped\n");

    let out = p.dloop(&["resume", "-b", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), id);
    assert_eq!(status_of(&p, &id), "running");
    let follow = p.spawn(&["logs", "-f", &id], &[]);
    std::fs::write(p.root().join("release"), "").expect("release");
    let logs = p.wait(follow, LIMIT);
    assert!(logs.stdout.contains("run_completed"), "{}", logs.stdout);
    wait_status(&p, &id, "completed");
    let runner = runner_pid(&dir);
    assert!(poll(LIMIT, || (!process_alive(runner)).then_some(())).is_some());
    assert!(processes_of(&id).is_empty());
    let records = verified_log(&dir);
    assert_eq!(records.last().expect("records")["type"], "run_completed");
    let console = p.read(&format!(".loops/.dloop/runs/{id}/console.log"));
    assert!(console.contains("paused (stopped)"), "{console}");
    assert!(console.contains("completed in 1 step"), "{console}");
    // Nothing is left in the background folder once the children hold their runs.
    let leftovers = std::fs::read_dir(p.root().join(".loops/.dloop/background"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0);
}

#[test]
fn a_killed_background_runner_is_crashed_and_resume_ends_its_grandchildren() {
    let p = TestProject::new();
    p.write_loop(
        "kids",
        "initial: work\nstates:\n  work:\n    shell: |\n      if [ -e second ]; then exit 0; fi\n      sleep 300 & echo $! >> kids\n      sleep 300 & echo $! >> kids\n      wait\n    on: {_: done}\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "kids", "--background"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.stdout.trim().to_owned();
    let (_, dir) = p.only_run();
    let kids: Vec<u32> = poll(LIMIT, || {
        let text = std::fs::read_to_string(p.root().join("kids")).ok()?;
        let pids: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
        (pids.len() == 2).then_some(pids)
    })
    .expect("the action started its children");
    signal(runner_pid(&dir), "KILL");
    wait_status(&p, &id, "crashed");
    assert!(kids.iter().all(|pid| process_alive(*pid)));
    std::fs::write(p.root().join("second"), "").expect("second");
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(kids.iter().all(|pid| !process_alive(*pid)));
    assert!(processes_of(&id).is_empty());
}

#[test]
fn a_background_child_that_fails_early_reports_its_error() {
    let p = TestProject::new();
    p.write_loop(
        "ok",
        "initial: done\nstates:\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "missing", "-b"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no loop named `missing`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("ended before it started"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    assert!(p.run_dirs().is_empty());
}

#[test]
fn notify_gets_the_run_and_its_failure_is_only_a_warning() {
    let p = TestProject::new();
    p.write_loop(
        "ok",
        "initial: work\nstates:\n  work:\n    shell: \"true\"\n    on: {_: done}\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&[
        "run",
        "ok",
        "--notify",
        "echo \"$DLOOP_RUN_ID $DLOOP_STATUS $DLOOP_LOOP\" > notified; exit 3",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("warning: the --notify command failed"),
        "{}",
        out.stderr
    );
    let (id, _) = p.only_run();
    assert_eq!(p.read("notified"), format!("{id} completed ok\n"));
}
