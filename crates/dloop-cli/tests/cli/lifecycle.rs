//! Lifecycle edges of the real binary: long runs, stop, drain, force, Ctrl-C, timeouts,
//! resume with its counters and context, torn and corrupt logs. Hostile and huge output and
//! runs started at once are in run_edges.rs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{TestProject, count, lock_is_free, poll, process_alive, signal, verified_log};

/// Three steps; the second logs the context and its pid, and sleeps `nap` the first time only.
const SLEEPY: &str = r#"name: sleepy
description: three steps, the second one slow once
initial: one
context:
  side: /dev/null
  nap: "0"
  greeting: ""
states:
  one:
    shell: echo "$DLOOP_IDEMPOTENCY_KEY" >> ${context.side}
    next: two
  two:
    shell: |
      echo "$DLOOP_IDEMPOTENCY_KEY" >> ${context.side}
      echo "greeting="${context.greeting} >> ${context.side}.ctx
      echo $$ >> ${context.side}.pids
      if [ ! -e "$DLOOP_RUN_DIR/slept" ]; then touch "$DLOOP_RUN_DIR/slept"; sleep ${context.nap}; fi
    next: three
  three:
    shell: echo "$DLOOP_IDEMPOTENCY_KEY" >> ${context.side}
    next: done
  done:
    terminal: success
"#;

struct Sleepy {
    project: TestProject,
    side: PathBuf,
}

impl Sleepy {
    fn new() -> Sleepy {
        let project = TestProject::new();
        project.write_loop("sleepy", SLEEPY);
        let side = project.root().join("side.txt");
        Sleepy { project, side }
    }

    fn args(&self, nap: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "run".to_owned(),
            "sleepy".to_owned(),
            "--json".to_owned(),
            "-c".to_owned(),
            format!("side={}", self.side.display()),
            "-c".to_owned(),
            format!("nap={nap}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Starts the run in the background and waits until step two's action has started.
    fn start_until_step_two(&self, nap: &str, extra: &[&str], env: &[(&str, &str)]) -> Running {
        let args = self.args(nap, extra);
        let child = self.project.spawn(&strs(&args), env);
        let pid = child.id();
        let (id, dir) = self
            .project
            .wait_for_log(Duration::from_secs(10), |records| {
                records
                    .iter()
                    .any(|r| r["type"] == "action_started" && r["state"] == "two")
            });
        // The action itself has begun once it logged its pid.
        poll(Duration::from_secs(10), || {
            std::fs::read_to_string(self.pids_path())
                .ok()
                .filter(|t| !t.is_empty())
        })
        .expect("step two's action never began");
        Running {
            child,
            pid,
            id,
            dir,
        }
    }

    fn pids_path(&self) -> PathBuf {
        PathBuf::from(format!("{}.pids", self.side.display()))
    }

    /// How often each key of `id` ran, by step.
    fn runs_per_step(&self, id: &str) -> Vec<usize> {
        let side = std::fs::read_to_string(&self.side).unwrap_or_default();
        (1..=3)
            .map(|step| {
                let key = format!("{id}:{step}");
                side.lines().filter(|l| *l == key).count()
            })
            .collect()
    }
}

struct Running {
    child: std::process::Child,
    pid: u32,
    id: String,
    dir: PathBuf,
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn last_types(records: &[Value], n: usize) -> Vec<String> {
    records[records.len().saturating_sub(n)..]
        .iter()
        .map(|r| r["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn thousand_step_loop_completes_with_a_gapless_verified_log() {
    let project = TestProject::new();
    project.write_loop(
        "thousand",
        "name: thousand\ninitial: tick\nstates:\n  tick:\n    shell: test $DLOOP_ITERATION -ge 1000\n    on: { success: done, failure: tick }\n  done:\n    terminal: success\n",
    );
    let out = project.dloop(&["run", "thousand", "--max-steps", "1000", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let (id, dir) = project.only_run();
    let records = verified_log(&dir);
    let steps = records
        .iter()
        .filter(|r| r["type"] == "state_entered" && r["state"] != "done")
        .count();
    assert_eq!(steps, 1000);
    assert_eq!(json["id"], id.as_str());
    assert_eq!(json["status"], "completed");
    assert_eq!(json["state"], "done");
    assert_eq!(json["step"], steps as u64);
    assert_eq!(json["states"]["tick"]["visits"], 1000);
    assert_eq!(json["states"]["done"]["visits"], 1);
    assert_eq!(count(&records, "action_finished"), 1000);
    assert_eq!(records.last().expect("records")["type"], "run_completed");
    // Snapshots were taken along the way, and the last reflects the whole log.
    let snapshot: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).expect("state"))
            .expect("state.json");
    let text = snapshot.to_string();
    assert!(
        text.contains(&format!("\"last_seq\":{}", records.len())),
        "state.json does not reflect seq {}",
        records.len()
    );
}

#[test]
fn stop_then_resume_reruns_no_finished_step() {
    let sleepy = Sleepy::new();
    let run = sleepy.start_until_step_two("5", &[], &[]);
    let stop = sleepy.project.dloop(&["stop", &run.id]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let out = sleepy.project.wait(run.child, Duration::from_secs(5));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.json()["status"], "paused");
    assert_eq!(out.json()["reason"], "stopped");
    let records = verified_log(&run.dir);
    assert_eq!(
        last_types(&records, 2),
        ["action_interrupted", "run_paused"]
    );
    assert_eq!(records.last().expect("records")["reason"], "stopped");
    assert!(lock_is_free(&run.dir));

    let out = sleepy.project.dloop(&["resume", &run.id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["status"], "completed");
    // Step two was interrupted and re-run on purpose with the same key; the others ran once.
    assert_eq!(sleepy.runs_per_step(&run.id), [1, 2, 1]);
    verified_log(&run.dir);
}

#[test]
fn stop_drain_lets_the_action_finish_and_resume_does_not_rerun_it() {
    let sleepy = Sleepy::new();
    let run = sleepy.start_until_step_two("1", &[], &[]);
    let stop = sleepy.project.dloop(&["stop", "--drain", &run.id]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let out = sleepy.project.wait(run.child, Duration::from_secs(5));
    assert_eq!(out.code, 3, "{}", out.stderr);
    let records = verified_log(&run.dir);
    assert_eq!(count(&records, "action_interrupted"), 0);
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "action_finished" && r["state"] == "two" && r["exit_code"] == 0),
        "the drained action was not recorded as finished"
    );
    assert_eq!(records.last().expect("records")["type"], "run_paused");
    assert_eq!(records.last().expect("records")["reason"], "stopped");

    let out = sleepy.project.dloop(&["resume", &run.id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sleepy.runs_per_step(&run.id), [1, 1, 1]);
}

#[test]
fn stop_force_leaves_a_crashed_run_that_resume_completes() {
    let sleepy = Sleepy::new();
    let run = sleepy.start_until_step_two("5", &[], &[]);
    let action_pid: u32 = std::fs::read_to_string(sleepy.pids_path())
        .expect("pids")
        .trim()
        .parse()
        .expect("pid");
    let stop = sleepy.project.dloop(&["stop", "--force", &run.id]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let out = sleepy.project.wait(run.child, Duration::from_secs(5));
    assert_eq!(out.signal, Some(9), "the runner was not SIGKILLed");
    assert!(lock_is_free(&run.dir));
    let records = verified_log(&run.dir);
    assert_eq!(records.last().expect("records")["type"], "action_started");
    assert!(
        poll(Duration::from_secs(2), || (!process_alive(action_pid))
            .then_some(()))
        .is_some(),
        "the action (pid {action_pid}) outlived stop --force"
    );

    let out = sleepy.project.dloop(&["resume", &run.id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sleepy.runs_per_step(&run.id), [1, 2, 1]);
    let records = verified_log(&run.dir);
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "action_interrupted" && r["reason"] == "crashed")
    );
    let _ = run.pid;
}

#[test]
fn elapsed_counters_and_context_survive_resume() {
    let sleepy = Sleepy::new();
    let run = sleepy.start_until_step_two("5", &["-c", "greeting=hello world; $(x)"], &[]);
    signal(run.pid, "TERM");
    let out = sleepy.project.wait(run.child, Duration::from_secs(5));
    assert_eq!(out.code, 3, "{}", out.stderr);
    let before = out.json();
    assert_eq!(before["context"]["greeting"], "hello world; $(x)");
    let elapsed_before = before["elapsed_ms"].as_u64().expect("elapsed");

    let out = sleepy.project.dloop(&["resume", &run.id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let after = out.json();
    assert_eq!(after["context"]["greeting"], "hello world; $(x)");
    let elapsed_after = after["elapsed_ms"].as_u64().expect("elapsed");
    // Run time grows by exactly the second session's span in the log (from `run_resumed` to
    // its last record); the time the run sat paused (from `run_paused` to `run_resumed`) is
    // not counted. Read from the log, so no clock of the test's is compared.
    let records = verified_log(&run.dir);
    let ts = |r: &serde_json::Value| {
        serde_json::from_value::<dloop_core::Timestamp>(r["ts"].clone())
            .expect("ts")
            .as_millis()
    };
    let resumed = records
        .iter()
        .find(|r| r["type"] == "run_resumed")
        .expect("resumed");
    let paused = records
        .iter()
        .find(|r| r["type"] == "run_paused")
        .expect("paused");
    let last = records.last().expect("records");
    assert_eq!(
        elapsed_after - elapsed_before,
        ts(last) - ts(resumed),
        "elapsed counted something besides the second session (paused for {} ms)",
        ts(resumed) - ts(paused)
    );
    assert_eq!(after["step"], 3);
    assert_eq!(after["sessions"], 2);
    // The action saw the context in both sessions.
    let ctx = std::fs::read_to_string(format!("{}.ctx", sleepy.side.display())).expect("ctx");
    assert_eq!(
        ctx.lines().collect::<Vec<_>>(),
        ["greeting=hello world; $(x)"; 2]
    );

    // A max_steps pause is resumable too, and resume continues to the end.
    let sleepy = Sleepy::new();
    let out = sleepy
        .project
        .dloop(&strs(&sleepy.args("0", &["--max-steps", "1"])));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.json()["reason"], "max_steps");
    assert_eq!(out.json()["step"], 1);
    let (id, _) = sleepy.project.only_run();
    let out = sleepy.project.dloop(&["resume", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["step"], 3);
    assert_eq!(sleepy.runs_per_step(&id), [1, 1, 1]);
}

/// A paused run (after step one) of the sleepy loop: its id and folder.
fn paused_run(sleepy: &Sleepy) -> (String, PathBuf) {
    let out = sleepy
        .project
        .dloop(&strs(&sleepy.args("0", &["--max-steps", "1"])));
    assert_eq!(out.code, 3, "{}", out.stderr);
    sleepy.project.only_run()
}

#[test]
fn torn_tail_is_cut_and_recorded_then_resume_completes() {
    let sleepy = Sleepy::new();
    let (id, dir) = paused_run(&sleepy);
    let log = dir.join("events.jsonl");
    let mut text = std::fs::read(&log).expect("log");
    text.extend_from_slice(br#"{"seq":99,"ts":"2026-11-21T1"#);
    std::fs::write(&log, text).expect("write");
    let out = sleepy.project.dloop(&["resume", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = verified_log(&dir);
    assert_eq!(count(&records, "log_repaired"), 1);
    assert_eq!(sleepy.runs_per_step(&id), [1, 1, 1]);
}

/// Rewrites line `n` (1-based) of `log` so its crc no longer matches, keeping it valid JSON.
fn damage_line(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > n, "{text}");
    let mut damaged = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i + 1 == n {
            // Flip one byte of the timestamp's year.
            assert!(line.contains(r#""ts":"2"#), "{line}");
            damaged.push_str(&line.replacen(r#""ts":"2"#, r#""ts":"3"#, 1));
        } else {
            damaged.push_str(line);
        }
        damaged.push('\n');
    }
    std::fs::write(log, &damaged).expect("write");
    damaged
}

/// Resume refuses naming line 2, and leaves the log as it was. Exit 70 (dloop's own failure:
/// a corrupt log), not 2, since issue 7 split faults from usage errors.
fn assert_resume_refuses_line_2(project: &TestProject, id: &str, log: &Path, damaged: &str) {
    let out = project.dloop(&["resume", id, "--json"]);
    assert_eq!(out.code, 70, "{}", out.stderr);
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
    // Never guess: the log is left as it was.
    assert_eq!(std::fs::read_to_string(log).expect("log"), damaged);
}

/// Corruption in the part of the log resume reads (everything after the snapshot's resume
/// point) is refused. The log before a valid snapshot is not re-read by design (resume cost
/// must not grow with the log: dloop-store's `FileStore::open_run`); a full replay reads it all.
#[test]
fn corrupt_middle_line_makes_resume_refuse_naming_the_line() {
    // A crashed run: no snapshot was written at its end, so resume replays the whole log.
    let sleepy = Sleepy::new();
    let out = sleepy.project.dloop_env(
        &strs(&sleepy.args("0", &[])),
        &[("DLOOP_CRASH_AT", "after_side_effect:3")],
    );
    assert_eq!(out.signal, Some(9), "{}", out.stderr);
    let (id, dir) = sleepy.project.only_run();
    assert!(!dir.join("state.json").exists());
    let log = dir.join("events.jsonl");
    let damaged = damage_line(&log, 2);
    assert_resume_refuses_line_2(&sleepy.project, &id, &log, &damaged);
    assert_eq!(sleepy.runs_per_step(&id), [1, 1, 1]);

    // A paused run replayed in full (its snapshot removed).
    let sleepy = Sleepy::new();
    let (id, dir) = paused_run(&sleepy);
    std::fs::remove_file(dir.join("state.json")).expect("rm state.json");
    let log = dir.join("events.jsonl");
    let damaged = damage_line(&log, 2);
    assert_resume_refuses_line_2(&sleepy.project, &id, &log, &damaged);
    assert_eq!(sleepy.runs_per_step(&id), [1, 0, 0]);
}

#[test]
fn ctrl_c_pauses_as_interrupted_and_the_run_resumes() {
    let sleepy = Sleepy::new();
    let run = sleepy.start_until_step_two("5", &[], &[]);
    signal(run.pid, "INT");
    let out = sleepy.project.wait(run.child, Duration::from_secs(5));
    assert_eq!(out.code, 130, "{}", out.stderr);
    assert_eq!(out.json()["status"], "paused");
    assert_eq!(out.json()["reason"], "interrupted");
    let records = verified_log(&run.dir);
    assert_eq!(
        last_types(&records, 2),
        ["action_interrupted", "run_paused"]
    );
    assert_eq!(records.last().expect("records")["reason"], "interrupted");

    let out = sleepy.project.dloop(&["resume", &run.id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sleepy.runs_per_step(&run.id), [1, 2, 1]);
}

#[test]
fn second_ctrl_c_kills_the_action_at_once() {
    let project = TestProject::new();
    project.write_loop(
        "stubborn",
        "name: stubborn\ninitial: hold\nstates:\n  hold:\n    shell: |\n      trap '' TERM\n      echo $$ > pid.txt\n      sleep 8\n    next: done\n  done:\n    terminal: success\n",
    );
    // A 20 s grace: only the second Ctrl-C can end this action quickly.
    let child = project.spawn(
        &["run", "stubborn", "--json"],
        &[("DLOOP_KILL_GRACE_MS", "20000")],
    );
    let pid = child.id();
    let action_pid: u32 = poll(Duration::from_secs(10), || {
        std::fs::read_to_string(project.root().join("pid.txt"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    })
    .expect("the action never started");
    signal(pid, "INT");
    // A second SIGINT sent while the first is still pending is merged with it by the kernel:
    // send it only once the first was delivered (no longer pending).
    poll(Duration::from_secs(5), || {
        (!sigint_pending(pid)).then_some(())
    })
    .expect("the first Ctrl-C was handled");
    signal(pid, "INT");
    let out = project.wait(child, Duration::from_secs(10));
    assert_eq!(out.code, 130, "{}", out.stderr);
    assert_eq!(out.json()["reason"], "interrupted");
    assert!(
        poll(Duration::from_secs(2), || (!process_alive(action_pid))
            .then_some(()))
        .is_some(),
        "the action survived the second Ctrl-C"
    );
    let (id, dir) = project.only_run();
    let records = verified_log(&dir);
    assert_eq!(
        last_types(&records, 2),
        ["action_interrupted", "run_paused"]
    );
    let _ = id;
}

#[test]
fn action_timeouts_end_the_action_well_before_it_would() {
    let project = TestProject::new();
    project.write_loop(
        "timeouts",
        r#"name: timeouts
initial: slow
states:
  slow:
    shell: sleep 5
    timeout: 200ms
    on: { success: failed, failure: failed, error: quiet }
  quiet:
    shell: echo hi; sleep 5
    idle_timeout: 300ms
    on: { success: failed, failure: failed, error: chatty }
  chatty:
    shell: for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.1; done
    idle_timeout: 300ms
    on: { success: done, failure: failed, error: failed }
  done:
    terminal: success
  failed:
    terminal: failure
"#,
    );
    let out = project.dloop(&["run", "timeouts", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, dir) = project.only_run();
    let records = verified_log(&dir);
    let verdicts: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["type"] == "evaluated")
        .map(|r| (r["state"].as_str().unwrap(), r["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [("slow", "error"), ("quiet", "error"), ("chatty", "success")]
    );
    let timed_out: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "action_finished" && r.get("timed_out").is_some())
        .collect();
    assert_eq!(timed_out.len(), 2, "{timed_out:?}");

    // An unrouted error fails the run, just as fast.
    project.write_loop(
        "unrouted",
        "name: unrouted\ninitial: slow\nstates:\n  slow:\n    shell: sleep 5\n    timeout: 200ms\n    on: { success: done, failure: done }\n  done:\n    terminal: success\n",
    );
    let out = project.dloop(&["run", "unrouted", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.json()["status"], "failed");
}

#[test]
fn run_timeout_exits_4_and_resume_with_a_larger_timeout_completes() {
    let project = TestProject::new();
    project.write_loop(
        "steps",
        "name: steps\ninitial: a\nstates:\n  a:\n    shell: sleep 0.2\n    next: b\n  b:\n    shell: sleep 0.2\n    next: c\n  c:\n    shell: sleep 0.2\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = project.dloop(&["run", "steps", "--timeout", "300ms", "--json"]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(out.json()["status"], "timed_out");
    let (id, dir) = project.only_run();
    let records = verified_log(&dir);
    assert_eq!(records.last().expect("records")["type"], "run_timed_out");
    let out = project.dloop(&["resume", &id, "--timeout", "10s", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["status"], "completed");
    verified_log(&dir);
}

/// Whether SIGINT is pending (delivered, not yet handled) for process `pid`, from the `SigPnd`
/// and `ShdPnd` masks of `/proc/<pid>/status`.
fn sigint_pending(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        // SIGINT is signal 2: bit 1 of the mask.
        .any(|mask| mask & (1 << 1) != 0)
}
