//! One action process: pipes drained concurrently, timeouts and stops end the whole group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dloop_core::event::ActionTimeout;
use dloop_runtime::process::{ActionSpec, Ending, StopFlag, StopLevel, run_action};

fn spec(dir: &std::path::Path, command: &str) -> ActionSpec {
    ActionSpec {
        argv: vec!["bash".into(), "-c".into(), command.into()],
        env: vec![],
        cwd: dir.to_path_buf(),
        stdin: None,
        timeout: None,
        idle_timeout: None,
        run_deadline: None,
        output_path: dir.join("out"),
        output_rel: "out".into(),
        kill_grace: Duration::from_millis(200),
    }
}

#[test]
fn ten_megabytes_on_both_pipes_do_not_deadlock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let command = "head -c 10000000 /dev/zero | tr '\\0' a & head -c 10000000 /dev/zero | tr '\\0' b >&2; wait";
    let (result, ending) =
        run_action(&spec(dir.path(), command), &StopFlag::default()).expect("runs");
    assert_eq!(ending, Ending::Finished);
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(result.bytes, 20_000_000);
    assert!(!result.complete);
    assert!(result.excerpt.len() < 8 * 1024, "excerpt is bounded");
    assert_eq!(
        std::fs::metadata(dir.path().join("out"))
            .expect("output")
            .len(),
        20_000_000
    );
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
    spec.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let (result, _) = run_action(&spec, &StopFlag::default()).expect("runs");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(result.timed_out, Some(ActionTimeout::Wall));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .parse()
        .expect("number");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "grandchild {pid} survived"
    );
}

#[test]
fn idle_timeout_fires_on_silence_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = spec(
        dir.path(),
        "for i in 1 2 3 4 5; do echo tick; sleep 0.1; done; sleep 30",
    );
    spec.idle_timeout = Some(Duration::from_millis(400));
    let (result, _) = run_action(&spec, &StopFlag::default()).expect("runs");
    assert_eq!(result.timed_out, Some(ActionTimeout::Idle));
    assert!(
        result.excerpt.matches("tick").count() == 5,
        "{}",
        result.excerpt
    );
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
    let started = Instant::now();
    let (_, ending) = run_action(&spec(dir.path(), "sleep 30"), &stop).expect("runs");
    assert_eq!(ending, Ending::Stopped);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_program_that_cannot_start_is_a_result_not_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = spec(dir.path(), "");
    spec.argv = vec!["/nonexistent/dloop-test-program".into()];
    let (result, ending) = run_action(&spec, &StopFlag::default()).expect("runs");
    assert_eq!(ending, Ending::Finished);
    assert!(result.error.is_some());
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
    assert_eq!(dloop_runtime::process::end_leftover_action(&unique), 1);
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
