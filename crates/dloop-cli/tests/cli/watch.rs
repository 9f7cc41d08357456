//! `dloop watch` through a real pseudo-terminal (util-linux `script` makes one): it shows a run
//! and the output of the step the run starts while the dashboard is open, and `q` leaves the
//! alternate screen. Without a terminal it refuses with a hint.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{TestProject, poll};

const TWO_STEPS: &str = "initial: first\nstates:\n  first:\n    shell: echo first-step; sleep 1\n    next: second\n  second:\n    shell: echo SECOND-STEP-MARK; sleep 3\n    next: done\n  done:\n    terminal: success\n";

#[test]
fn watch_follows_a_run_through_a_pty_and_q_restores_the_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` (util-linux) to make a pseudo-terminal");
        return;
    }
    let p = TestProject::new();
    p.write_loop("two", TWO_STEPS);
    let run = p.spawn(&["run", "two"], &[]);
    let exe = assert_cmd::cargo::cargo_bin("dloop");
    // `script` gives the child a pty; its size is set before dloop starts (a pipe has none).
    let inner = format!(
        "stty cols 100 rows 30; exec '{}' watch --interval 100",
        exe.display()
    );
    let mut watch = Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .current_dir(p.root())
        .env("TERM", "xterm-256color")
        .env("HOME", p.root().join("home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = watch.stdout.take().expect("stdout");
    let sink = Arc::clone(&screen);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    let seen = |text: &str| String::from_utf8_lossy(&screen.lock().expect("lock")).contains(text);
    let mut keys = watch.stdin.take().expect("stdin");
    assert!(
        poll(Duration::from_secs(10), || seen("two").then_some(())).is_some(),
        "the run is listed"
    );
    // Open the run: its detail follows the log and the running step's output.
    keys.write_all(b"\r").expect("enter");
    keys.flush().expect("flush");
    assert!(
        poll(Duration::from_secs(10), || seen("SECOND-STEP-MARK")
            .then_some(()))
        .is_some(),
        "the new step's output shows: {}",
        String::from_utf8_lossy(&screen.lock().expect("lock"))
    );
    assert!(seen("state_entered"), "the timeline shows");
    keys.write_all(b"q").expect("q");
    keys.flush().expect("flush");
    let status = watch.wait().expect("wait");
    reader.join().expect("reader");
    assert!(status.success(), "{status}");
    let text = String::from_utf8_lossy(&screen.lock().expect("lock")).into_owned();
    let left = text
        .rfind("\x1b[?1049l")
        .expect("left the alternate screen");
    let entered = text
        .rfind("\x1b[?1049h")
        .expect("entered the alternate screen");
    assert!(left > entered, "the alternate screen is left last");
    assert!(
        text[left..].contains("\x1b[?25h"),
        "the cursor is shown again"
    );
    let out = p.wait(run, Duration::from_secs(20));
    assert_eq!(out.code, 0, "{}", out.render());
}

#[test]
fn watch_without_a_terminal_refuses_with_a_hint() {
    let p = TestProject::new();
    let out = p.dloop(&["watch"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("needs a terminal"), "{}", out.stderr);
    assert!(out.stderr.contains("dloop status --json"), "{}", out.stderr);
}
