//! One action process: pipes drained concurrently, timeouts and stops end the whole group, and
//! nothing the action started outlives it: not a `setsid` or double-forked grandchild, not one
//! that ignores SIGTERM, not one that keeps the pipes open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dloop_core::event::ActionTimeout;
use dloop_runtime::actions::output::Stream;
use dloop_runtime::process::{Limits, ProcessEnd, ProcessSpec, StopFlag, StopLevel, run_process};

fn spec(dir: &std::path::Path, command: &str) -> ProcessSpec {
    ProcessSpec {
        argv: vec!["bash".into(), "-c".into(), command.into()],
        env: vec![("DLOOP_IDEMPOTENCY_KEY".into(), key(dir))],
        cwd: dir.to_path_buf(),
        stdin: None,
        idempotency_key: key(dir),
        limits: Limits {
            kill_grace: Duration::from_millis(200),
            ..Limits::default()
        },
    }
}

/// A key unique to the test (its temp dir), as the runtime gives each action its own.
fn key(dir: &std::path::Path) -> String {
    format!("test-{}", dir.display())
}

/// Runs `spec` and collects its output.
fn run(spec: &ProcessSpec, stop: &StopFlag) -> (ProcessEnd, Vec<u8>) {
    let mut out = Vec::new();
    let end = run_process(spec, stop, &mut |_, bytes| {
        out.extend_from_slice(bytes);
        Ok(())
    })
    .expect("runs");
    (end, out)
}

/// Whether process `pid` is alive (a zombie counts as dead).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').expect("stat") + 2..]
                .chars()
                .next()
                .expect("state");
            state != 'Z' && state != 'X'
        }
        Err(_) => false,
    }
}

/// Polls until every pid in `file` (one a line) is dead, or panics naming the survivors.
fn assert_all_dead(file: &std::path::Path) {
    let pids: Vec<i32> = std::fs::read_to_string(file)
        .expect("pid file")
        .lines()
        .map(|l| l.trim().parse().expect("pid"))
        .collect();
    assert!(!pids.is_empty(), "no pid was written to {}", file.display());
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let survivors: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(survivors.is_empty(), "processes survived: {survivors:?}");
}

#[test]
fn ten_megabytes_on_both_pipes_do_not_deadlock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let command = "head -c 10000000 /dev/zero | tr '\\0' a & head -c 10000000 /dev/zero | tr '\\0' b >&2; wait";
    let mut stdout = 0;
    let mut stderr = 0;
    let end = run_process(
        &spec(dir.path(), command),
        &StopFlag::default(),
        &mut |s, b| {
            match s {
                Stream::Stdout => stdout += b.len(),
                Stream::Stderr => stderr += b.len(),
            }
            Ok(())
        },
    )
    .expect("runs");
    assert!(!end.stopped);
    assert_eq!(end.exit_code(), Some(0));
    assert_eq!((stdout, stderr), (10_000_000, 10_000_000));
}

#[test]
fn wall_timeout_ends_the_whole_group_including_grandchildren() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("grandchild.pid");
    let command = format!(
        "(sleep 30 & echo $! > {}; wait) ; sleep 30",
        pid_file.display()
    );
    let mut spec = spec(dir.path(), &command);
    spec.limits.timeout = Some(Duration::from_millis(300));
    let (end, _) = run(&spec, &StopFlag::default());
    assert_eq!(end.timed_out, Some(ActionTimeout::Wall));
    assert_all_dead(&pid_file);
}

#[test]
fn idle_timeout_fires_on_silence_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = spec(
        dir.path(),
        "for i in 1 2 3 4 5; do echo tick; sleep 0.1; done; sleep 30",
    );
    spec.limits.idle_timeout = Some(Duration::from_millis(400));
    let (end, out) = run(&spec, &StopFlag::default());
    assert_eq!(end.timed_out, Some(ActionTimeout::Idle));
    assert_eq!(String::from_utf8_lossy(&out).matches("tick").count(), 5);
}

#[test]
fn stop_request_ends_the_action_and_is_not_a_finish() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stop = Arc::new(StopFlag::default());
    let raiser = Arc::clone(&stop);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        raiser.raise(StopLevel::Stop);
    });
    let (end, _) = run(&spec(dir.path(), "sleep 30"), &stop);
    assert!(end.stopped);
}

#[test]
fn a_program_that_cannot_start_is_a_result_not_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = spec(dir.path(), "");
    spec.argv = vec!["/nonexistent/dloop-test-program".into()];
    let (end, _) = run(&spec, &StopFlag::default());
    assert!(!end.stopped);
    assert!(end.spawn_error.is_some());
}

/// The adversarial cases of issue 6: a grandchild that leaves the action's process group and
/// keeps (or closes) the pipes. Each must end with the step, quickly, leaving nothing behind.
const ESCAPES: &[(&str, &str)] = &[
    (
        "setsid holding the pipes",
        "setsid sleep 600 & echo $! > PIDS",
    ),
    (
        "setsid with its output elsewhere",
        "setsid sleep 600 > /dev/null 2>&1 < /dev/null & echo $! > PIDS",
    ),
    ("nohup", "nohup sleep 600 > /dev/null 2>&1 & echo $! > PIDS"),
    (
        "double fork",
        "( ( sleep 600 & echo $! > PIDS ) & ) ; sleep 0.1",
    ),
    (
        "ignores SIGTERM in a new session",
        "setsid bash -c 'trap \"\" TERM; echo $$ > PIDS; sleep 600 & wait' & sleep 0.2",
    ),
    (
        "setsid grandchild of a setsid child",
        "setsid bash -c 'setsid sleep 600 & echo $! >> PIDS; echo $$ >> PIDS; wait' & sleep 0.2",
    ),
];

#[test]
fn escaped_grandchildren_end_with_their_step_and_do_not_hang_it() {
    for (name, command) in ESCAPES {
        let dir = tempfile::tempdir().expect("temp dir");
        let pids = dir.path().join("pids");
        let command = command.replace("PIDS", &pids.display().to_string());
        let mut spec = spec(dir.path(), &command);
        spec.limits.timeout = Some(Duration::from_secs(3));
        let started = Instant::now();
        let (end, _) = run(&spec, &StopFlag::default());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{name}: the step waited for its grandchild ({:?})",
            started.elapsed()
        );
        assert_eq!(
            end.exit_code(),
            Some(0),
            "{name}: the main process finished"
        );
        assert_all_dead(&pids);
    }
}

#[test]
fn stop_ends_an_action_whose_grandchildren_escaped_and_ignore_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pids = dir.path().join("pids");
    let command = format!(
        "trap '' TERM; setsid bash -c 'trap \"\" TERM; echo $$ >> {p}; sleep 600' & echo $$ >> {p}; sleep 600 & wait",
        p = pids.display()
    );
    let stop = Arc::new(StopFlag::default());
    let raiser = Arc::clone(&stop);
    let watched = pids.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&watched).map_or(0, |t| t.lines().count()) < 2
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        raiser.raise(StopLevel::Stop);
    });
    let (end, _) = run(&spec(dir.path(), &command), &stop);
    assert!(end.stopped);
    assert_all_dead(&pids);
}

#[test]
fn a_timeout_fires_when_the_action_closed_its_pipes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = spec(dir.path(), "exec > /dev/null 2>&1; sleep 600");
    spec.limits.timeout = Some(Duration::from_millis(300));
    let (end, _) = run(&spec, &StopFlag::default());
    assert_eq!(end.timed_out, Some(ActionTimeout::Wall));
}

#[test]
fn leftover_actions_of_a_dead_runner_are_ended_and_other_runs_are_not() {
    let unique = format!("leftover-test-{}-{:?}", std::process::id(), Instant::now());
    let spawn = |run_id: &str| {
        std::process::Command::new("bash")
            .args(["-c", "sleep 30 & wait"])
            .env("DLOOP_RUN_ID", run_id)
            .process_group(0)
            .spawn()
            .expect("spawn")
    };
    let mut ours = spawn(&unique);
    let mut other = spawn(&format!("{unique}-other"));
    // Until bash has run, its environment may still be the test's; wait for ours to show.
    let wanted = format!("DLOOP_RUN_ID={unique}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let env = std::fs::read(format!("/proc/{}/environ", ours.id())).unwrap_or_default();
        if env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(dloop_runtime::reaper::end_leftover_action(&unique), 1);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(ours.wait().expect("waits").signal(), Some(9));
    assert!(
        other.try_wait().expect("waits").is_none(),
        "another run's action was killed"
    );
    dloop_runtime::signals::signal_group(other.id() as i32, 9);
    let _ = other.wait();
}

use std::os::unix::process::CommandExt;
