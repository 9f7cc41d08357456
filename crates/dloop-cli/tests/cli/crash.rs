//! Crash safety of the real binary: `dloop run` killed with SIGKILL at every crash point of the
//! store and the runtime (`DLOOP_CRASH_AT`), and at random moments, then resumed to the end.
//!
//! After every crash the run must read as crashed (its lock free, its log not closed by a
//! terminal or pause record), and after the resumes it must end exactly as an uninterrupted run
//! does, with a gapless, checksummed log, and with no finished step run twice: each action
//! appends its `DLOOP_IDEMPOTENCY_KEY` to a side file outside the run folder, and a key may
//! appear there at most once plus once per `action_interrupted` the log holds for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    Output, TestProject, XorShift, count, ends_session, lock_is_free, poll, process_alive,
    read_log_lenient, verified_log,
};

/// Counts to `upto` (one step each), then a flaky step that fails once and is retried, then a
/// step that checks the capture of the last count. Every action logs its key and its pid.
const CRASHY: &str = r#"name: crashy
description: counts, retries a flaky step, checks a capture
initial: count
context:
  side: /dev/null
  nap: "0"
  upto: "4"
states:
  count:
    shell: |
      echo "$DLOOP_IDEMPOTENCY_KEY" >> ${context.side}
      echo "$$" >> ${context.side}.pids
      sleep ${context.nap}
      echo "n=$DLOOP_ITERATION"
      test "$DLOOP_ITERATION" -ge ${context.upto}
    capture: last
    on: { success: flaky, failure: count }
  flaky:
    shell: |
      echo "$DLOOP_IDEMPOTENCY_KEY" >> ${context.side}
      echo "$$" >> ${context.side}.pids
      upto=${context.upto}
      test "$DLOOP_ITERATION" -ne $((upto + 1))
    retries: { max: 2, on: [failure], on_exhausted: failed }
    next: check
  check:
    shell: |
      echo "$DLOOP_IDEMPOTENCY_KEY" >> ${context.side}
      case ${captured.last.output} in *n=${context.upto}*) exit 0 ;; *) exit 1 ;; esac
    on: { success: done, failure: failed }
  done:
    terminal: success
  failed:
    terminal: failure
"#;

/// A project holding the crashy loop, and the side file its actions write.
pub(crate) struct Crashy {
    pub(crate) project: TestProject,
    pub(crate) side: PathBuf,
}

impl Crashy {
    pub(crate) fn new() -> Crashy {
        let project = TestProject::new();
        project.write_loop("crashy", CRASHY);
        let side = project.root().join("side.txt");
        Crashy { project, side }
    }

    /// The arguments of `dloop run crashy`.
    pub(crate) fn run_args(&self, upto: u64, nap: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "crashy",
            "--json",
            "-c",
            &format!("side={}", self.side.display()),
            "-c",
            &format!("nap={nap}"),
            "-c",
            &format!("upto={upto}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

pub(crate) fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// What an uninterrupted run of the crashy loop up to `upto` ends with.
pub(crate) fn expected_end(upto: u64) -> Value {
    serde_json::json!({
        "status": "completed",
        "state": "done",
        "step": upto + 3,
        "visits": { "count": upto, "flaky": 2, "check": 1, "done": 1 },
        "capture": format!("n={upto}"),
    })
}

/// The parts of a run's JSON that any two runs of the same loop must agree on.
pub(crate) fn end_of(json: &Value) -> Value {
    let visits: BTreeMap<String, Value> = json["states"]
        .as_object()
        .expect("states")
        .iter()
        .map(|(name, s)| (name.clone(), s["visits"].clone()))
        .collect();
    serde_json::json!({
        "status": json["status"],
        "state": json["state"],
        "step": json["step"],
        "visits": visits,
        "capture": json["captures"]["last"]["excerpt"].as_str().map(str::trim_end),
    })
}

/// Checks what a crashed run looks like before it is resumed: nobody holds its lock, and its
/// log (as far as it has whole lines) does not say the session ended.
fn assert_reads_as_crashed(run_dir: &Path, what: &str) {
    assert!(lock_is_free(run_dir), "{what}: the lock is still held");
    let records = read_log_lenient(&run_dir.join("events.jsonl"));
    assert!(
        !ends_session(&records),
        "{what}: the log ends with {:?}",
        records.last()
    );
}

/// Resumes until the run reaches a terminal status. `first_env` is given to the first resume
/// only (a crash during resume). Returns the last resume's output.
pub(crate) fn resume_to_end(
    project: &TestProject,
    id: &str,
    first_env: &[(&str, &str)],
    what: &str,
) -> Output {
    let mut env = first_env;
    for attempt in 0..6 {
        let out = project.dloop_env(&["resume", id, "--json"], env);
        let crashing = !env.is_empty();
        env = &[];
        if crashing && out.signal == Some(9) {
            let run_dir = project.root().join(".loops/.dloop/runs").join(id);
            assert_reads_as_crashed(&run_dir, &format!("{what}, crash in resume"));
            continue;
        }
        assert_eq!(
            out.signal, None,
            "{what}: resume {attempt} died: {}",
            out.stderr
        );
        match out.code {
            0 | 1 => return out,
            3 => continue,
            code => panic!("{what}: resume {attempt} exited {code}: {}", out.stderr),
        }
    }
    panic!("{what}: the run did not end after 6 resumes")
}

/// The invariants every run of the crashy loop keeps, however often it was killed:
/// a valid log, at most `repairs` `log_repaired`, and no finished step run twice.
pub(crate) fn assert_invariants(
    run_dir: &Path,
    side: &Path,
    repairs: usize,
    what: &str,
) -> Vec<Value> {
    let records = verified_log(run_dir);
    assert!(
        count(&records, "log_repaired") <= repairs,
        "{what}: {} log_repaired records, expected at most {repairs}",
        count(&records, "log_repaired")
    );
    let side_text = std::fs::read_to_string(side).unwrap_or_default();
    let mut in_side: BTreeMap<&str, usize> = BTreeMap::new();
    for key in side_text.lines() {
        *in_side.entry(key).or_default() += 1;
    }
    let mut interrupted: BTreeMap<String, usize> = BTreeMap::new();
    let mut finished: BTreeMap<String, usize> = BTreeMap::new();
    let mut started: BTreeMap<String, usize> = BTreeMap::new();
    let mut pending: Option<String> = None;
    for record in &records {
        let key = record["idempotency_key"].as_str().map(str::to_owned);
        match record["type"].as_str().unwrap_or("") {
            "action_started" => {
                let key = key.expect("action_started has a key");
                assert!(
                    !finished.contains_key(&key),
                    "{what}: key {key} started again after it finished (seq {})",
                    record["seq"]
                );
                *started.entry(key.clone()).or_default() += 1;
                pending = Some(key);
            }
            "action_finished" => {
                let key = pending
                    .take()
                    .expect("action_finished without action_started");
                *finished.entry(key).or_default() += 1;
            }
            "action_interrupted" => {
                let key = key.expect("action_interrupted has a key");
                assert_eq!(
                    pending.take().as_ref(),
                    Some(&key),
                    "{what}: interrupted key"
                );
                *interrupted.entry(key).or_default() += 1;
            }
            _ => {}
        }
    }
    for (key, times) in &in_side {
        assert!(
            started.contains_key(*key),
            "{what}: key {key} ran without an action_started record"
        );
        let allowed = 1 + interrupted.get(*key).copied().unwrap_or(0);
        assert!(
            *times <= allowed,
            "{what}: key {key} ran {times} times, allowed {allowed}\nside file:\n{side_text}"
        );
    }
    for key in finished.keys() {
        assert!(
            in_side.contains_key(key.as_str()),
            "{what}: key {key} finished but its action never ran"
        );
    }
    records
}

/// One crash case: `run` with `DLOOP_CRASH_AT=crash_at`, then resumes (the first with
/// `resume_crash`, if given) to the end.
struct Case {
    crash_at: &'static str,
    resume_crash: Option<&'static str>,
    upto: u64,
    extra: &'static [&'static str],
    /// The crash lands after the run's last record (a snapshot at session end).
    after_session: bool,
    /// The crash lands before the first record is durable: nothing ran, and resume starts the
    /// run from the first record kept in run.json.
    never_started: bool,
}

const fn case(crash_at: &'static str) -> Case {
    Case {
        crash_at,
        resume_crash: None,
        upto: 4,
        extra: &[],
        after_session: false,
        never_started: false,
    }
}

fn run_case(c: &Case) {
    let what = match c.resume_crash {
        Some(second) => format!("{} then {second} in resume", c.crash_at),
        None => c.crash_at.to_owned(),
    };
    let crashy = Crashy::new();
    let project = &crashy.project;
    let args = crashy.run_args(c.upto, "0", c.extra);
    let out = project.dloop_env(&strs(&args), &[("DLOOP_CRASH_AT", c.crash_at)]);
    assert_eq!(
        out.signal,
        Some(9),
        "{what}: the run was not killed (exit {}): {}",
        out.code,
        out.stderr
    );
    let (id, run_dir) = project.only_run();
    if c.after_session {
        assert!(lock_is_free(&run_dir), "{what}: the lock is still held");
    } else {
        assert_reads_as_crashed(&run_dir, &what);
    }
    if c.never_started {
        assert!(
            !crashy.side.exists(),
            "{what}: an action ran before the log had a record"
        );
    }
    let resume_env: Vec<(&str, &str)> = c
        .resume_crash
        .map(|p| vec![("DLOOP_CRASH_AT", p)])
        .unwrap_or_default();
    let out = resume_to_end(project, &id, &resume_env, &what);
    assert_eq!(out.code, 0, "{what}: {}", out.stderr);
    let repairs = [Some(c.crash_at), c.resume_crash]
        .iter()
        .flatten()
        .filter(|p| p.starts_with("mid_write"))
        .count();
    let records = assert_invariants(&run_dir, &crashy.side, repairs, &what);
    assert_eq!(end_of(&out.json()), expected_end(c.upto), "{what}");
    assert_eq!(records.last().expect("records")["type"], "run_completed");
}

#[test]
fn uninterrupted_reference_run_ends_as_expected() {
    let crashy = Crashy::new();
    let out = crashy.project.dloop(&strs(&crashy.run_args(4, "0", &[])));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(end_of(&out.json()), expected_end(4));
    let (_, run_dir) = crashy.project.only_run();
    let records = assert_invariants(&run_dir, &crashy.side, 0, "reference");
    assert_eq!(count(&records, "log_repaired"), 0);
    // Each key ran exactly once.
    let side = std::fs::read_to_string(&crashy.side).expect("side file");
    assert_eq!(side.lines().count(), 7, "{side}");
}

#[test]
fn kill_at_store_crash_points_then_resume_reruns_no_finished_step() {
    for point in ["before_append:1", "mid_write:1"] {
        run_case(&Case {
            never_started: true,
            ..case(point)
        });
    }
    for point in [
        "before_append:2",
        "before_append:4",
        "before_append:8",
        "mid_write:2",
        "mid_write:3",
        "mid_write:7",
        "before_fsync:2",
        "before_fsync:5",
        "after_fsync:2",
        "after_fsync:6",
    ] {
        run_case(&case(point));
    }
}

#[test]
fn kill_after_intent_or_side_effect_then_resume_reruns_only_the_interrupted_step() {
    for point in [
        "after_intent:1",
        "after_intent:4",
        "after_intent:7",
        "after_side_effect:1",
        "after_side_effect:5",
        "after_side_effect:7",
    ] {
        run_case(&case(point));
    }
}

#[test]
fn kill_during_a_snapshot_then_resume_continues() {
    // At session end: the run pauses at max_steps, then dies writing state.json.
    for point in ["snapshot_before_rename:1", "snapshot_after_rename:1"] {
        run_case(&Case {
            extra: &["--max-steps", "3"],
            after_session: true,
            ..case(point)
        });
    }
    // Mid-run: a snapshot every 1,000 records; 220 steps write about 1,100.
    for point in ["snapshot_before_rename:1", "snapshot_after_rename:1"] {
        run_case(&Case {
            upto: 220,
            extra: &["--max-steps", "1000"],
            ..case(point)
        });
    }
}

#[test]
fn kill_during_resume_then_resume_again_completes() {
    for (first, second) in [
        ("mid_write:2", "after_side_effect:1"),
        ("after_intent:3", "before_fsync:2"),
        ("after_side_effect:2", "mid_write:1"),
        ("before_fsync:4", "after_intent:2"),
    ] {
        run_case(&Case {
            resume_crash: Some(second),
            ..case(first)
        });
    }
}

/// `trials` runs killed with SIGKILL after a random 0–150 ms, each resumed to the end.
fn random_kills(seed: u64, trials: u32) {
    let mut rng = XorShift(seed);
    let mut resumed = 0;
    for trial in 0..trials {
        let what = format!("seed {seed} trial {trial}");
        let crashy = Crashy::new();
        let project = &crashy.project;
        let mut child = project.spawn(&strs(&crashy.run_args(4, "0.04", &[])), &[]);
        std::thread::sleep(Duration::from_millis(rng.below(151)));
        child.kill().expect("kill");
        let out = project.wait(child, Duration::from_secs(10));
        let Some((id, run_dir)) = poll(Duration::ZERO, || {
            (!project.run_dirs().is_empty()).then(|| project.only_run())
        }) else {
            // Killed before the run folder existed: nothing to resume.
            continue;
        };
        if id.starts_with(".creating-") {
            // Killed while the folder was being built: a leftover, never listed as a run.
            continue;
        }
        let end = if out.signal == Some(9) {
            let records = read_log_lenient(&run_dir.join("events.jsonl"));
            if records.is_empty() {
                // Killed between creating the folder and the first record: nothing ran.
                assert!(!crashy.side.exists(), "{what}: an action ran without a log");
                if !run_dir.join("run.json").exists() {
                    // Killed before run.json was written: there is nothing to start from.
                    continue;
                }
            }
            // The kernel drops the lock once the last holder of its descriptor is gone; poll
            // with a deadline rather than assume that is instant.
            assert!(
                poll(Duration::from_secs(10), || lock_is_free(&run_dir)
                    .then_some(()))
                .is_some(),
                "{what}: the lock is still held"
            );
            if ends_session(&records) {
                // Killed after the end was durable (while writing the snapshot).
                assert_eq!(records.last().expect("record")["type"], "run_completed");
                let out = project.dloop(&["resume", &id, "--json"]);
                assert_eq!(out.code, 2, "{what}: resume of a completed run");
                None
            } else {
                resumed += 1;
                Some(resume_to_end(project, &id, &[], &what))
            }
        } else {
            assert_eq!(out.code, 0, "{what}: {}", out.stderr);
            Some(out)
        };
        assert_invariants(&run_dir, &crashy.side, 0, &what);
        if let Some(end) = end {
            assert_eq!(end_of(&end.json()), expected_end(4), "{what}");
        }
        // No action outlives the run: resume ended the group the dead runner left behind.
        let pids =
            std::fs::read_to_string(format!("{}.pids", crashy.side.display())).unwrap_or_default();
        for pid in pids.lines().filter_map(|p| p.parse::<u32>().ok()) {
            assert!(
                poll(Duration::from_secs(2), || (!process_alive(pid))
                    .then_some(()))
                .is_some(),
                "{what}: action process {pid} is still alive"
            );
        }
    }
    // Where a kill lands depends on the machine's speed, so how many landed mid-run is
    // reported, not asserted (the soak and the DLOOP_CRASH_AT tests pin exact points).
    eprintln!("seed {seed}: {resumed} of {trials} kills landed mid-run");
}

#[test]
fn random_sigkill_then_resume_keeps_every_guarantee_a() {
    random_kills(0x5eed_0001, 25);
}

#[test]
fn random_sigkill_then_resume_keeps_every_guarantee_b() {
    random_kills(0x5eed_0002, 25);
}
