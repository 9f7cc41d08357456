//! Issue 7 with the real binary: what dloop refuses rather than guesses at (exit 70, the file
//! named, nothing modified, no finished step run again), and what it repairs or ignores.
//! Each test is named for what it guards; the store-level twins are in dloop-store's
//! tests/refusals.rs.

use std::path::Path;

use crate::common::{TestProject, count, verified_log};

/// Two steps; `--max-steps 1` pauses the run after the first, with a snapshot.
const TWO_STEPS: &str = "initial: a\nstates:\n  a:\n    shell: echo a >> \"$DLOOP_RUN_DIR/trail\"\n    next: b\n  b:\n    shell: echo b >> \"$DLOOP_RUN_DIR/trail\"\n    next: done\n  done:\n    terminal: success\n";

/// dloop's own failures: I/O, a corrupt log, refused data (README, exit codes).
const FAULT: i32 = 70;

fn paused_run(p: &TestProject) -> (String, std::path::PathBuf) {
    p.write_loop("flow", TWO_STEPS);
    let out = p.dloop(&["run", "flow", "--max-steps", "1"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let (id, dir) = p.only_run();
    assert!(
        dir.join("state.json").is_file(),
        "a paused run has a snapshot"
    );
    (id, dir)
}

fn trail(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("work/trail")).expect("trail")
}

/// Byte offsets just after each whole batch (lines without `_more`).
fn batch_ends(log: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 0;
    for line in log.split_inclusive(|b| *b == b'\n') {
        pos += line.len();
        if !line.windows(7).any(|w| w == b"\"_more\"") {
            ends.push(pos);
        }
    }
    ends
}

/// F3: a log replaced by a link is refused naming it; the target stays byte-identical.
#[test]
fn symlinked_log_leaves_its_target_byte_identical() {
    let p = TestProject::new();
    let (id, dir) = paused_run(&p);
    let target = p.write("precious.conf", "keep = me\n{\"seq\":1,\"torn");
    let before = std::fs::read(&target).expect("read");
    std::fs::remove_file(dir.join("events.jsonl")).expect("rm");
    std::os::unix::fs::symlink(&target, dir.join("events.jsonl")).expect("symlink");
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, FAULT, "{}", out.stderr);
    assert!(
        out.stderr.contains("events.jsonl is a symbolic link"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&target).expect("read"), before);
    assert_eq!(trail(&dir), "a\n", "nothing ran");
}

/// F2: a log whose every line ends in `\r` has no valid record: refused, not cut to empty.
#[test]
fn log_with_every_line_ending_in_cr_is_refused_and_nothing_reruns() {
    let p = TestProject::new();
    let (id, dir) = paused_run(&p);
    let log = dir.join("events.jsonl");
    let crlf = std::fs::read_to_string(&log)
        .expect("read")
        .replace('\n', "\r\n");
    std::fs::write(&log, &crlf).expect("write");
    std::fs::remove_file(dir.join("state.json")).expect("rm snapshot");
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, FAULT, "{}", out.stderr);
    assert!(out.stderr.contains("line 1 is damaged"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&log).expect("read"), crlf);
    assert_eq!(trail(&dir), "a\n", "the finished step did not run again");
}

/// F1: the last line, covered by the snapshot, is damaged: caught before anything is appended.
#[test]
fn damaged_last_line_under_the_snapshot_is_caught_before_appending() {
    let p = TestProject::new();
    let (id, dir) = paused_run(&p);
    let log = dir.join("events.jsonl");
    let mut bytes = std::fs::read(&log).expect("read");
    let last_line = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    bytes[last_line + 3] ^= 0x01;
    std::fs::write(&log, &bytes).expect("write");
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, FAULT, "{}", out.stderr);
    assert!(
        out.stderr.contains("snapshot was taken after it"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(&log).expect("read"),
        bytes,
        "nothing appended"
    );
    let out = p.dloop(&["inspect", &id]);
    assert_eq!(out.code, FAULT, "{}", out.stderr);
    assert_eq!(trail(&dir), "a\n");
}

/// F4: a log cut at a batch boundary below the snapshot lost durable records: refused, and
/// the finished step's action is not run again.
#[test]
fn log_cut_below_the_snapshot_is_caught() {
    let p = TestProject::new();
    let (id, dir) = paused_run(&p);
    let log = dir.join("events.jsonl");
    let bytes = std::fs::read(&log).expect("read");
    let ends = batch_ends(&bytes);
    assert!(ends.len() >= 2, "{ends:?}");
    // The last batch (the step's result and the pause) is gone; the intent before it stays.
    let cut = ends[ends.len() - 2];
    std::fs::write(&log, &bytes[..cut]).expect("cut");
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, FAULT, "{}", out.stderr);
    assert!(out.stderr.contains("state.json"), "{}", out.stderr);
    assert_eq!(std::fs::read(&log).expect("read"), &bytes[..cut]);
    assert_eq!(
        trail(&dir),
        "a\n",
        "the last step's action did not run again"
    );
}

/// F5: an edited definition in run.json is refused naming the file, whether its own hash was
/// left (run.json disagrees with itself) or recomputed (run.json disagrees with the log).
#[test]
fn tampered_run_json_is_refused_naming_it() {
    use sha2::Digest;
    let p = TestProject::new();
    let (id, dir) = paused_run(&p);
    let meta_path = dir.join("run.json");
    let original = std::fs::read_to_string(&meta_path).expect("read");
    let mut meta: serde_json::Value = serde_json::from_str(&original).expect("json");
    let edited = meta["definition"]
        .as_str()
        .expect("definition")
        .replace("echo b", "echo pwned");
    meta["definition"] = edited.clone().into();
    std::fs::write(&meta_path, meta.to_string()).expect("write");
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, FAULT, "{}", out.stderr);
    assert!(out.stderr.contains("run.json"), "{}", out.stderr);

    let sha: String = sha2::Sha256::digest(edited.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    meta["definition_sha256"] = sha.into();
    std::fs::write(&meta_path, meta.to_string()).expect("write");
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, FAULT, "{}", out.stderr);
    assert!(out.stderr.contains("the log recorded"), "{}", out.stderr);
    assert_eq!(trail(&dir), "a\n", "the edited definition never ran");
}

/// F5: a parseable, hand-edited state.json is not believed: status and resume rebuild from
/// the log.
#[test]
fn tampered_state_json_is_rebuilt_from_the_log() {
    let p = TestProject::new();
    let (id, dir) = paused_run(&p);
    let snap = dir.join("state.json");
    let text = std::fs::read_to_string(&snap).expect("read");
    assert!(text.contains(r#""status":"paused""#), "{text}");
    std::fs::write(
        &snap,
        text.replace(r#""status":"paused""#, r#""status":"completed""#),
    )
    .expect("write");
    let out = p.dloop(&["status", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()[0]["status"], "paused", "{}", out.stdout);
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(trail(&dir), "a\nb\n");
}

/// F6: damage in the first line is line 1 at byte 0 for `logs` and `inspect` alike.
#[test]
fn logs_and_inspect_name_damage_in_the_first_line_as_line_1() {
    let p = TestProject::new();
    let (id, dir) = paused_run(&p);
    let log = dir.join("events.jsonl");
    let mut bytes = std::fs::read(&log).expect("read");
    bytes[10] ^= 0x01;
    std::fs::write(&log, &bytes).expect("write");
    std::fs::remove_file(dir.join("state.json")).expect("rm snapshot");
    for cmd in ["logs", "inspect"] {
        let out = p.dloop(&[cmd, &id]);
        assert_eq!(out.code, FAULT, "{cmd}: {}", out.stderr);
        assert!(
            out.stderr.contains("line 1 is damaged"),
            "{cmd}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("at byte 0"), "{cmd}: {}", out.stderr);
    }
}

/// F7: a husk (a run folder with an empty lock and nothing else, left by an older dloop when
/// the disk filled up) never breaks `status` or a bare `resume`, and `gc` removes it.
#[test]
fn husk_never_breaks_status_or_resume() {
    let p = TestProject::new();
    let (id, dir) = paused_run(&p);
    let husk = dir.with_file_name("flow-20200101T000000-dead");
    std::fs::create_dir(&husk).expect("mkdir");
    std::fs::write(husk.join("lock"), b"").expect("lock");
    let out = p.dloop(&["status"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    assert!(
        out.stderr.contains("incomplete run folder"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains(&id), "{}", out.stdout);
    let out = p.dloop(&["resume"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(trail(&dir), "a\nb\n");
    let out = p.dloop(&["gc"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!husk.exists(), "{}", out.stderr);
}

/// F7: deleting run.json does not hide a run whose log is intact; resume says what is missing.
#[test]
fn run_without_run_json_is_still_found() {
    let p = TestProject::new();
    let (id, dir) = paused_run(&p);
    std::fs::remove_file(dir.join("run.json")).expect("rm");
    let out = p.dloop(&["status"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&id), "{}", out.stdout);
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, FAULT, "{}", out.stderr);
    assert!(out.stderr.contains("run.json is missing"), "{}", out.stderr);
}

/// `resume --reload` takes the new file only as `dloop validate` accepts it; a rejected file
/// changes nothing, and the run goes on once the file is fixed.
#[test]
fn reload_refuses_a_loop_that_validate_rejects() {
    let p = TestProject::new();
    let (id, dir) = paused_run(&p);
    let broken = TWO_STEPS.replace("next: done", "next: dnoe");
    p.write_loop("flow", &broken);
    let validate = p.dloop(&["validate", "flow"]);
    assert_eq!(validate.code, 2, "{}", validate.stdout);
    let before = std::fs::read(dir.join("events.jsonl")).expect("read");
    let out = p.dloop(&["resume", &id, "--reload"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("dnoe"), "{}", out.stderr);
    assert!(out.stderr.contains("not a valid loop"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(dir.join("events.jsonl")).expect("read"),
        before
    );
    p.write_loop("flow", &TWO_STEPS.replace("echo b", "echo B"));
    let out = p.dloop(&["resume", &id, "--reload"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(trail(&dir), "a\nB\n");
    assert_eq!(count(&verified_log(&dir), "definition_reloaded"), 1);
}

/// Outcome and fault never share a code: a loop that reaches its failure terminal exits 1.
#[test]
fn a_failed_run_exits_1_and_a_fault_exits_70() {
    let p = TestProject::new();
    p.write_loop(
        "fails",
        "initial: a\nstates:\n  a:\n    shell: 'true'\n    next: bad\n  bad:\n    terminal: failure\n",
    );
    let out = p.dloop(&["run", "fails"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let (id, dir) = p.only_run();
    std::fs::write(dir.join("events.jsonl"), b"not a log\nat all\n").expect("write");
    let out = p.dloop(&["logs", &id]);
    assert_eq!(out.code, FAULT, "{}", out.stderr);
}

/// A runner whose lock file is deleted and replaced under it (so another process could take
/// the run) learns it at its next write and stops with exit 70, appending nothing more.
#[test]
fn replaced_lock_file_stops_the_runner_at_its_next_write() {
    let p = TestProject::new();
    p.write_loop(
        "slow",
        "initial: a\nstates:\n  a:\n    shell: sleep 1\n    next: done\n  done:\n    terminal: success\n",
    );
    let child = p.spawn(&["run", "slow"], &[]);
    let (_, dir) = p.wait_for_log(std::time::Duration::from_secs(10), |records| {
        records.iter().any(|r| r["type"] == "action_started")
    });
    let before = std::fs::read(dir.join("events.jsonl")).expect("read");
    std::fs::remove_file(dir.join("lock")).expect("rm lock");
    std::fs::write(dir.join("lock"), b"").expect("new lock");
    let out = p.wait(child, std::time::Duration::from_secs(20));
    assert_eq!(out.code, FAULT, "{}", out.stderr);
    assert!(out.stderr.contains("lost the claim"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(dir.join("events.jsonl")).expect("read"),
        before
    );
}
