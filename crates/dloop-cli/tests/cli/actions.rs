//! Issue 6 with the real binary: output a user can watch (`dloop output`, `-f`, `-v`,
//! `logs --output`, the failing stderr in the final message), and no action that can hang,
//! outlive or orphan its run (`setsid`, `nohup`, double forks, TERM-ignoring grandchildren,
//! SIGHUP, SIGQUIT, Ctrl-Z).

use std::path::Path;
use std::time::Duration;

use crate::common::{TestProject, count, poll, process_alive, signal, verified_log};

/// Pids of live processes whose environment carries `DLOOP_RUN_ID=<id>`.
fn processes_of_run(id: &str) -> Vec<u32> {
    let wanted = format!("DLOOP_RUN_ID={id}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) && process_alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Polls until no process of run `id` is alive, else panics naming them.
fn assert_nothing_left(id: &str) {
    let left = poll(Duration::from_secs(5), || {
        processes_of_run(id).is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "processes of run {id} survived: {:?}",
        processes_of_run(id)
    );
}

/// A state that prints `first`, waits for `$DLOOP_RUN_DIR/go`, then prints `second`.
const GATED: &str = r#"initial: slow
states:
  slow:
    shell: |
      echo first
      echo $$ > "$DLOOP_RUN_DIR/pid"
      while [ ! -e "$DLOOP_RUN_DIR/go" ]; do sleep 0.02; done
      echo second
    next: done
  done:
    terminal: success
"#;

/// Waits until `dloop output RUN` prints `want` (dloop reads the action's pipe on its own
/// schedule, so a file the action wrote after printing can appear first).
fn wait_for_output(p: &TestProject, id: &str, want: &str) {
    poll(Duration::from_secs(10), || {
        (p.dloop(&["output", id]).stdout == want).then_some(())
    })
    .unwrap_or_else(|| panic!("`dloop output {id}` never printed {want:?}"));
}

fn wait_for_file(path: &Path) {
    poll(Duration::from_secs(10), || path.exists().then_some(()))
        .unwrap_or_else(|| panic!("{} never appeared", path.display()));
}

#[test]
fn output_is_readable_while_the_step_runs_and_after_a_stop_ends_it() {
    let p = TestProject::new();
    p.write_loop("gated", GATED);
    let child = p.spawn(&["run", "gated"], &[]);
    let (id, run_dir) = p.wait_for_log(Duration::from_secs(10), |r| {
        r.iter().any(|r| r["type"] == "action_started")
    });
    wait_for_file(&run_dir.join("work/pid"));
    // The running step's output so far.
    wait_for_output(&p, &id, "first\n");
    let json = p.dloop(&["output", &id, "1", "--json"]).json();
    assert_eq!(json["status"], "open");
    assert_eq!(json["offset"], 0);
    let out = p.dloop(&["stop", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(p.wait(child, Duration::from_secs(10)).code, 3);
    let out = p.dloop(&["output", &id, "slow"]);
    assert_eq!(
        out.stdout, "first\n",
        "the interrupted step's partial output is kept"
    );
    let records = verified_log(&run_dir);
    let interrupted = records
        .iter()
        .find(|r| r["type"] == "action_interrupted")
        .expect("interrupted");
    assert_eq!(interrupted["bytes"], 6);
    assert_nothing_left(&id);
}

#[test]
fn output_of_an_action_whose_runner_was_killed_is_kept() {
    let p = TestProject::new();
    p.write_loop("gated", GATED);
    let child = p.spawn(&["run", "gated"], &[]);
    let (id, run_dir) = p.wait_for_log(Duration::from_secs(10), |r| {
        r.iter().any(|r| r["type"] == "action_started")
    });
    wait_for_output(&p, &id, "first\n");
    signal(child.id(), "KILL");
    let _ = p.wait(child, Duration::from_secs(10));
    let out = p.dloop(&["output", &id]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "first\n"),
        "{}",
        out.stderr
    );
    // Resume re-runs the step; its new output follows the old one in the stream and
    // `dloop output` shows the new attempt.
    std::fs::write(run_dir.join("work/go"), "").expect("go");
    let out = p.dloop(&["resume", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dloop(&["output", &id]);
    assert_eq!(out.stdout, "first\nsecond\n");
}

#[test]
fn output_follow_prints_as_it_arrives_and_ends_with_the_step() {
    let p = TestProject::new();
    p.write_loop("gated", GATED);
    let run = p.spawn(&["run", "gated"], &[]);
    let (id, run_dir) = p.wait_for_log(Duration::from_secs(10), |r| {
        r.iter().any(|r| r["type"] == "action_started")
    });
    let follow = p.spawn(&["output", &id, "-f"], &[]);
    wait_for_file(&run_dir.join("work/pid"));
    std::fs::write(run_dir.join("work/go"), "").expect("go");
    let out = p.wait(follow, Duration::from_secs(10));
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "first\nsecond\n"),
        "{}",
        out.stderr
    );
    assert_eq!(p.wait(run, Duration::from_secs(10)).code, 0);
}

#[test]
fn a_failed_runs_message_shows_the_failing_commands_stderr() {
    let p = TestProject::new();
    p.write_loop(
        "typo",
        "initial: test\nstates:\n  test:\n    shell: echo testing; pyhton3 -c 'print(1)'\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "typo"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("pyhton3: command not found"),
        "{}",
        out.stderr
    );
    let (id, _) = p.only_run();
    assert!(
        out.stderr
            .contains(&format!("all of it: dloop output {id} 1")),
        "{}",
        out.stderr
    );
    let out = p.dloop(&["output", &id, "1"]);
    assert!(out.stdout.starts_with("testing\n"), "{}", out.stdout);
}

#[test]
fn verbose_runs_stream_output_under_the_step_lines_and_logs_interleave_it() {
    let p = TestProject::new();
    p.write_loop(
        "talk",
        "initial: a\nstates:\n  a:\n    shell: echo hello; echo oops >&2\n    next: b\n  b:\n    shell: printf 'no newline'\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "talk", "-v"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for line in ["│ hello", "│ oops", "│ no newline"] {
        assert!(out.stderr.contains(line), "{line}: {}", out.stderr);
    }
    let (id, _) = p.only_run();
    let logs = p.dloop(&["logs", &id, "--output"]).stdout;
    let hello = logs.find("│ hello").expect("output shown");
    let started = logs.find("action_started").expect("start");
    let finished = logs.find("action_finished").expect("finish");
    assert!(started < hello && hello < finished, "{logs}");
    let json = p.dloop(&["logs", &id, "--output", "--json"]).stdout;
    let outputs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|v: &serde_json::Value| v["type"] == "output")
        .collect();
    assert_eq!(outputs.len(), 2, "{json}");
    assert_eq!(outputs[0]["text"], "hello\noops\n");
    assert_eq!(outputs[1]["text"], "no newline");
}

#[test]
fn inspect_shows_every_states_last_output_and_where_it_is() {
    let p = TestProject::new();
    p.write_loop(
        "two",
        "initial: a\nstates:\n  a:\n    shell: echo alpha\n    next: b\n  b:\n    shell: echo beta\n    next: done\n  done:\n    terminal: success\n",
    );
    assert_eq!(p.dloop(&["run", "two"]).code, 0);
    let json = p.dloop(&["inspect", "two", "--json"]).json();
    let a = &json["states"]["a"]["last_output"];
    assert_eq!(
        (a["step"].as_u64(), a["excerpt"].as_str()),
        (Some(1), Some("alpha\n"))
    );
    assert_eq!(a["output_path"], "output.log");
    assert_eq!(json["states"]["b"]["last_output"]["output_offset"], 6);
    let text = p.dloop(&["inspect", "two"]).stdout;
    assert!(text.contains("beta"), "{text}");
    assert!(text.contains("dloop output"), "{text}");
}

/// Actions that leave their process group or session while holding (or not) the pipes.
const ESCAPES: &[&str] = &[
    "setsid sleep 600 &",
    "setsid sleep 600 > /dev/null 2>&1 < /dev/null &",
    "nohup sleep 600 > /dev/null 2>&1 &",
    "( ( sleep 600 & ) & )",
    "setsid bash -c 'trap \"\" TERM; sleep 600 & wait' &",
];

#[test]
fn escaped_children_neither_hang_the_run_nor_outlive_it() {
    for command in ESCAPES {
        let p = TestProject::new();
        p.write_loop(
            "escape",
            &format!(
                "initial: a\nstates:\n  a:\n    shell: \"{}\"\n    timeout: 3s\n    next: done\n  done:\n    terminal: success\n",
                command.replace('\\', "\\\\").replace('"', "\\\"")
            ),
        );
        let child = p.spawn(&["run", "escape"], &[]);
        // Well within the action's 3 s timeout: the step ends when its main process does.
        let out = p.wait(child, Duration::from_secs(10));
        assert_eq!(out.code, 0, "{command}: {}", out.stderr);
        let (id, run_dir) = p.only_run();
        let records = verified_log(&run_dir);
        let finished = records
            .iter()
            .find(|r| r["type"] == "action_finished")
            .expect("finished");
        assert!(
            finished.get("timed_out").is_none(),
            "{command}: the step waited for its grandchild until the timeout"
        );
        assert_nothing_left(&id);
    }
}

/// A main process that ignores SIGTERM, with a `setsid` grandchild that ignores it too.
const STUBBORN: &str = r#"initial: a
states:
  a:
    shell: |
      trap '' TERM
      setsid bash -c 'trap "" TERM; sleep 600' &
      echo started
      sleep 600
    next: done
  done:
    terminal: success
"#;

#[test]
fn stop_ends_an_action_with_stubborn_escaped_grandchildren() {
    let p = TestProject::new();
    p.write_loop("stubborn", STUBBORN);
    let child = p.spawn(&["run", "stubborn"], &[]);
    let (id, _) = p.wait_for_log(Duration::from_secs(10), |r| {
        r.iter().any(|r| r["type"] == "action_started")
    });
    poll(Duration::from_secs(10), || {
        (p.dloop(&["output", &id]).stdout == "started\n").then_some(())
    })
    .expect("the action started its grandchild");
    assert_eq!(p.dloop(&["stop", &id]).code, 0);
    let out = p.wait(child, Duration::from_secs(10));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_nothing_left(&id);
}

#[test]
fn sighup_and_sigquit_pause_the_run_and_end_its_action() {
    for sig in ["HUP", "QUIT"] {
        let p = TestProject::new();
        p.write_loop("stubborn", STUBBORN);
        let child = p.spawn(&["run", "stubborn"], &[]);
        let (id, run_dir) = p.wait_for_log(Duration::from_secs(10), |r| {
            r.iter().any(|r| r["type"] == "action_started")
        });
        poll(Duration::from_secs(10), || {
            (p.dloop(&["output", &id]).stdout == "started\n").then_some(())
        })
        .expect("the action started");
        signal(child.id(), sig);
        let out = p.wait(child, Duration::from_secs(10));
        assert_eq!(out.code, 3, "SIG{sig}: {}", out.stderr);
        let records = verified_log(&run_dir);
        assert_eq!(
            records.last().expect("records")["type"],
            "run_paused",
            "SIG{sig}"
        );
        assert_eq!(count(&records, "action_interrupted"), 1, "SIG{sig}");
        let status = p.dloop(&["inspect", &id, "--json"]).json();
        assert_eq!(status["status"], "paused", "SIG{sig}: not crashed");
        assert_nothing_left(&id);
    }
}

/// The process state letter of `pid` (`T` when stopped).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn ctrl_z_stops_the_action_with_dloop_and_fg_continues_both() {
    let p = TestProject::new();
    p.write_loop("gated", GATED);
    let child = p.spawn(&["run", "gated"], &[]);
    let (_, run_dir) = p.wait_for_log(Duration::from_secs(10), |r| {
        r.iter().any(|r| r["type"] == "action_started")
    });
    // The file exists before the shell's write lands in it: poll until it holds a number.
    let action: u32 = poll(Duration::from_secs(10), || {
        std::fs::read_to_string(run_dir.join("work/pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
    .expect("the action wrote its pid");
    signal(child.id(), "TSTP");
    poll(Duration::from_secs(10), || {
        (proc_state(child.id()) == Some('T') && proc_state(action) == Some('T')).then_some(())
    })
    .expect("dloop and its action both stopped");
    signal(child.id(), "CONT");
    poll(Duration::from_secs(10), || {
        (proc_state(action).is_some_and(|s| s != 'T')).then_some(())
    })
    .expect("the action continued with dloop");
    std::fs::write(run_dir.join("work/go"), "").expect("go");
    let out = p.wait(child, Duration::from_secs(10));
    assert_eq!(out.code, 0, "{}", out.stderr);
}
