//! `dloop resume` decisions: a changed loop file (`--reload`), `--skip-to`, `on_interrupted:
//! stop` with `--rerun`, `--delay` between steps, and captures bounded by the capture limit.

use std::time::Duration;

use crate::common::{TestProject, count, poll, verified_log};

/// A loop that pauses after its first step (`--max-steps 1`), so resume has work left.
const TWO_STEPS: &str = "initial: a\nstates:\n  a:\n    shell: echo a >> \"$DLOOP_RUN_DIR/trail\"\n    next: b\n  b:\n    shell: echo b >> \"$DLOOP_RUN_DIR/trail\"\n    next: done\n  done:\n    terminal: success\n";

fn paused_run(p: &TestProject, name: &str, text: &str) -> (String, std::path::PathBuf) {
    p.write_loop(name, text);
    let out = p.dloop(&["run", name, "--max-steps", "1"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    p.only_run()
}

#[test]
fn changed_loop_file_is_refused_until_reload_and_the_new_text_is_used() {
    let p = TestProject::new();
    let (id, run_dir) = paused_run(&p, "flow", TWO_STEPS);
    p.write_loop("flow", &TWO_STEPS.replace("echo b", "echo B"));
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--reload"), "{}", out.stderr);
    let out = p.dloop(&["resume", &id, "--reload"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let trail = std::fs::read_to_string(run_dir.join("work/trail")).expect("trail");
    assert_eq!(trail, "a\nB\n", "the reloaded definition ran");
    let records = verified_log(&run_dir);
    assert_eq!(count(&records, "definition_reloaded"), 1);
}

#[test]
fn reload_refuses_a_file_without_the_current_state_unless_skip_to_names_one() {
    let p = TestProject::new();
    let (id, run_dir) = paused_run(&p, "flow", TWO_STEPS);
    let renamed = TWO_STEPS
        .replace("  b:\n", "  c:\n")
        .replace("next: b", "next: c");
    p.write_loop("flow", &renamed);
    let out = p.dloop(&["resume", &id, "--reload"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no state `b`"), "{}", out.stderr);
    let out = p.dloop(&["resume", &id, "--reload", "--skip-to", "c"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let trail = std::fs::read_to_string(run_dir.join("work/trail")).expect("trail");
    assert_eq!(trail, "a\nb\n");
}

#[test]
fn skip_to_continues_from_the_named_state_and_unknown_states_are_refused() {
    let p = TestProject::new();
    let (id, run_dir) = paused_run(&p, "flow", TWO_STEPS);
    let out = p.dloop(&["resume", &id, "--skip-to", "nope"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    let out = p.dloop(&["resume", &id, "--skip-to", "done"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let trail = std::fs::read_to_string(run_dir.join("work/trail")).expect("trail");
    assert_eq!(trail, "a\n", "state b was skipped");
}

#[test]
fn on_interrupted_stop_waits_for_a_decision_then_rerun_runs_it_again() {
    let p = TestProject::new();
    p.write_loop(
        "careful",
        "initial: deploy\nstates:\n  deploy:\n    shell: echo \"$DLOOP_IDEMPOTENCY_KEY\" >> \"$DLOOP_RUN_DIR/keys\"; sleep 30\n    timeout: 1m\n    on_interrupted: stop\n    next: done\n  done:\n    terminal: success\n",
    );
    let child = p.spawn(&["run", "careful"], &[]);
    let (id, run_dir) = poll(Duration::from_secs(10), || {
        let dirs = p.run_dirs();
        let dir = dirs.first()?;
        std::fs::read_to_string(dir.join("work/keys"))
            .ok()
            .filter(|k| !k.is_empty())?;
        Some(p.only_run())
    })
    .expect("the action started");
    let out = p.dloop(&["stop", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.wait(child, Duration::from_secs(10));
    assert_eq!(out.code, 3, "{}", out.stderr);
    // Plain resume does not run an interrupted `on_interrupted: stop` action again.
    let out = p.dloop(&["resume", &id, "--json"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.json()["reason"], "needs_decision");
    let keys = std::fs::read_to_string(run_dir.join("work/keys")).expect("keys");
    assert_eq!(keys.lines().count(), 1, "{keys}");
    // --rerun does, with the same idempotency key; --skip-to is the other way out.
    p.write_loop(
        "careful",
        "initial: deploy\nstates:\n  deploy:\n    shell: echo \"$DLOOP_IDEMPOTENCY_KEY\" >> \"$DLOOP_RUN_DIR/keys\"; sleep 30\n    timeout: 1m\n    on_interrupted: stop\n    next: done\n  done:\n    terminal: success\n",
    );
    let child = p.spawn(&["resume", &id, "--rerun"], &[]);
    poll(Duration::from_secs(10), || {
        let keys = std::fs::read_to_string(run_dir.join("work/keys")).ok()?;
        (keys.lines().count() == 2).then_some(())
    })
    .expect("re-run started");
    let keys = std::fs::read_to_string(run_dir.join("work/keys")).expect("keys");
    let lines: Vec<&str> = keys.lines().collect();
    assert_eq!(lines[0], lines[1], "a re-run keeps its idempotency key");
    p.dloop(&["stop", &id]);
    p.wait(child, Duration::from_secs(10));
    let out = p.dloop(&["resume", &id, "--skip-to", "done"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn delay_spaces_the_actions_of_successive_steps() {
    let p = TestProject::new();
    p.write_loop("flow", TWO_STEPS);
    let out = p.dloop(&["run", "flow", "--delay", "300ms"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, run_dir) = p.only_run();
    let starts: Vec<u64> = verified_log(&run_dir)
        .iter()
        .filter(|r| r["type"] == "action_started")
        .map(|r| millis(r["ts"].as_str().expect("ts")))
        .collect();
    assert_eq!(starts.len(), 2);
    assert!(
        starts[1] - starts[0] >= 300,
        "actions {} ms apart",
        starts[1] - starts[0]
    );
}

#[test]
fn captured_output_beyond_the_capture_limit_keeps_its_tail() {
    let p = TestProject::new();
    p.write_loop(
        "big",
        "initial: make\nstates:\n  make:\n    shell: head -c 300000 /dev/zero | tr '\\0' x; echo END\n    capture: big\n    next: use\n  use:\n    shell: printf '%s' ${captured.big.output} | wc -c > \"$DLOOP_RUN_DIR/size\"; printf '%s' ${captured.big.output} | tail -c 4 > \"$DLOOP_RUN_DIR/tail\"\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop_env(&["run", "big"], &[("DLOOP_CAPTURE_LIMIT", "100000")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, run_dir) = p.only_run();
    let size = std::fs::read_to_string(run_dir.join("work/size")).expect("size");
    assert_eq!(size.trim(), "100000");
    let tail = std::fs::read_to_string(run_dir.join("work/tail")).expect("tail");
    assert_eq!(tail, "END\n");
}

#[test]
fn a_capture_of_the_default_megabyte_still_fits_a_shell_command() {
    // A rendered command over 128 KiB cannot be one argument (E2BIG); dloop runs it from a file.
    let p = TestProject::new();
    p.write_loop(
        "huge",
        "initial: make\nstates:\n  make:\n    shell: head -c 1500000 /dev/zero | tr '\\0' x\n    capture: big\n    next: use\n  use:\n    shell: printf '%s' ${captured.big.output} | wc -c > \"$DLOOP_RUN_DIR/size\"\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "huge"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, run_dir) = p.only_run();
    let size = std::fs::read_to_string(run_dir.join("work/size")).expect("size");
    assert_eq!(size.trim(), (1024 * 1024).to_string());
}

/// Milliseconds since the epoch of an RFC 3339 time as the log writes it (`...T10:27:10.123Z`).
fn millis(ts: &str) -> u64 {
    // The whole timestamp, date included: a run crossing midnight must not wrap (issue 13).
    serde_json::from_value::<dloop_core::Timestamp>(serde_json::Value::from(ts))
        .expect("an RFC 3339 timestamp")
        .as_millis()
}

#[test]
fn stop_during_a_delay_pauses_at_once() {
    let p = TestProject::new();
    p.write_loop("flow", TWO_STEPS);
    let child = p.spawn(&["run", "flow", "--delay", "600s"], &[]);
    // Step 1 ran; the run now waits 10 minutes before step 2. (What resume waits after such a
    // stop is tested on an injected clock: runtime tests, clock.rs.)
    // Wait for step 1's end in the log (its file is written before the action has exited).
    let (id, run_dir) = p.wait_for_log(Duration::from_secs(10), |records| {
        records.iter().any(|r| r["type"] == "action_finished")
    });
    let out = p.dloop(&["stop", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.wait(child, Duration::from_secs(5));
    assert_eq!(
        out.code, 3,
        "the delay did not end at the stop: {}",
        out.stderr
    );
    let records = verified_log(&run_dir);
    assert_eq!(records.last().expect("records")["type"], "run_paused");
    assert_eq!(
        count(&records, "action_interrupted"),
        0,
        "no action was in flight"
    );
}
