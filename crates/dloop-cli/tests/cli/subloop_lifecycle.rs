//! Sub-loop lifecycle edges through the real binary: SIGKILL while the child runs (at a crash
//! point before a child step, between noting the child's id and creating it, after the child
//! finished; and kill -9 from outside during a child step), a stop during the child, a child that
//! pauses on its own, a child resumed alone, cancel and gc; every time, each finished child step
//! runs exactly once and both logs stay whole.

use std::path::Path;
use std::time::Duration;

use crate::common::{TestProject, count, lock_is_free, poll, verified_log};
use crate::subloops::{COUNTER, of_type, only_run_of, parent_of, run_dir, run_loop};

/// Runs `parent` (whose child is `counter`) with `DLOOP_CRASH_AT=crash_at`, asserts it died of
/// SIGKILL, resumes the parent and checks that every step ran exactly once.
pub(crate) fn crash_then_resume(crash_at: &str) -> TestProject {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("counter"));
    p.write_loop("counter", COUNTER);
    let out = p.dloop_env(&["run", "parent"], &[("DLOOP_CRASH_AT", crash_at)]);
    assert_eq!(out.signal, Some(9), "{}", out.render());
    let parent = only_run_of(&p, "parent");
    assert!(lock_is_free(&run_dir(&p, &parent)));
    let status = p.dloop(&["inspect", &parent, "--json"]).json();
    assert_eq!(status["status"], "crashed");

    let out = p.dloop(&["resume", &parent, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.json()["status"], "completed");
    // Every finished step ran exactly once, the child's before the parent's next one.
    assert_eq!(
        p.read("marker.txt"),
        "s1\ns2\ns3\ns4\ns5\nparent-after\n",
        "crash at {crash_at}"
    );
    let child = only_run_of(&p, "counter");
    let parent_log = verified_log(&run_dir(&p, &parent));
    let child_log = verified_log(&run_dir(&p, &child));
    assert_eq!(count(&parent_log, "sub_loop_started"), 1);
    assert_eq!(count(&parent_log, "run_completed"), 1);
    assert_eq!(count(&child_log, "run_completed"), 1);
    assert_eq!(count(&child_log, "sub_loop_of"), 1);
    assert_eq!(
        of_type(&parent_log, "sub_loop_started")[0]["child_run_id"],
        child.as_str()
    );
    p
}

#[test]
fn sigkill_while_the_child_runs_then_resume_finishes_the_child_then_the_parent() {
    // Intents: the parent's step 1 (1), then the child's steps 1, 2, 3 (2, 3, 4): killed with
    // the child's step 3 recorded as started and steps 1 and 2 finished.
    let p = crash_then_resume("after_intent:4");
    let child = only_run_of(&p, "counter");
    let child_log = verified_log(&run_dir(&p, &child));
    // The child resumed from its own log: one interrupted action (step 3), two sessions.
    assert_eq!(count(&child_log, "run_resumed"), 1);
    let interrupted = of_type(&child_log, "action_interrupted");
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0]["step"], 3);
    assert_eq!(interrupted[0]["reason"], "crashed");
}

#[test]
fn sigkill_between_noting_the_child_and_creating_it_then_resume_creates_it() {
    let p = crash_then_resume("after_sub_loop_note");
    let child = only_run_of(&p, "counter");
    let child_log = verified_log(&run_dir(&p, &child));
    // Created by the resume under the id the parent's log had noted: one session.
    assert_eq!(count(&child_log, "run_resumed"), 0);
}

#[test]
fn sigkill_after_the_child_finished_then_resume_takes_its_result() {
    // Side effects: the parent's `after` is not reached; the child's five steps are 1-5, so
    // the 6th is the parent's sub-loop step itself, right before its `action_finished`.
    let p = crash_then_resume("after_side_effect:6");
    let child = only_run_of(&p, "counter");
    let child_log = verified_log(&run_dir(&p, &child));
    assert_eq!(count(&child_log, "run_resumed"), 0);
}

/// A child whose step 2 announces itself, then waits for `go` (at most 30 s).
const WAITER: &str = r#"initial: s1
states:
  s1:
    shell: echo s1 >> marker.txt
    next: s2
  s2:
    shell: |
      echo s2-start >> marker.txt
      for i in $(seq 300); do test -f go && break; sleep 0.1; done
      echo s2 >> marker.txt
    next: s3
  s3:
    shell: echo s3 >> marker.txt
    next: done
  done:
    terminal: success
"#;

fn wait_for_line(root: &Path, line: &str) {
    let found = poll(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(root.join("marker.txt")).unwrap_or_default();
        text.lines().any(|l| l == line).then_some(())
    });
    assert!(found.is_some(), "marker.txt never got `{line}`");
}

#[test]
fn stop_during_the_child_then_resume_continues_both() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("waiter"));
    p.write_loop("waiter", WAITER);
    let child_process = p.spawn(&["run", "parent", "--json"], &[]);
    wait_for_line(p.root(), "s2-start");
    let parent = only_run_of(&p, "parent");
    let child = only_run_of(&p, "waiter");
    // While the parent drives it, the child is not resumed on its own.
    let refused = p.dloop(&["resume", &child]);
    assert_eq!(refused.code, 2, "{}", refused.render());
    assert!(
        refused
            .stderr
            .contains(&format!("sub-loop of run {parent}")),
        "{}",
        refused.stderr
    );
    let stop = p.dloop(&["stop", &parent]);
    assert_eq!(stop.code, 0, "{}", stop.render());
    let out = p.wait(child_process, Duration::from_secs(20));
    assert_eq!(out.code, 3, "{}", out.render());
    assert_eq!(out.json()["status"], "paused");
    assert_eq!(out.json()["reason"], "stopped");
    let child_json = p.dloop(&["inspect", &child, "--json"]).json();
    assert_eq!(child_json["status"], "paused");
    assert_eq!(child_json["reason"], "stopped");
    assert!(lock_is_free(&run_dir(&p, &parent)));
    assert!(lock_is_free(&run_dir(&p, &child)));

    // `dloop resume` without RUN picks the parent, not the child.
    std::fs::write(p.root().join("go"), "").expect("write go");
    let out = p.dloop(&["resume", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.json()["id"], parent.as_str());
    assert_eq!(out.json()["status"], "completed");
    // Step 2 was interrupted and re-run on purpose; s1 ran once.
    assert_eq!(
        p.read("marker.txt"),
        "s1\ns2-start\ns2-start\ns2\ns3\nparent-after\n"
    );
    let child_log = verified_log(&run_dir(&p, &child));
    assert_eq!(count(&child_log, "run_completed"), 1);
    let parent_log = verified_log(&run_dir(&p, &parent));
    let interrupted = of_type(&parent_log, "action_interrupted");
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0]["reason"], "stopped");
}

#[test]
fn a_child_that_pauses_on_its_own_pauses_the_parent() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("counter"));
    p.write_loop(
        "counter",
        &COUNTER.replace("initial: s1\n", "initial: s1\nlimits:\n  max_steps: 2\n"),
    );
    let out = p.dloop(&["run", "parent", "--json"]);
    assert_eq!(out.code, 3, "{}", out.render());
    let json = out.json();
    assert_eq!(json["reason"], "max_steps");
    let child = only_run_of(&p, "counter");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(message.contains(&child), "{message}");
    // Resuming the parent resumes the child (its default: the loop's steps again).
    let out = p.dloop(&["resume", "parent", "--json"]);
    assert_eq!(out.code, 3, "{}", out.render());
    let out = p.dloop(&["resume", "parent", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(p.read("marker.txt"), "s1\ns2\ns3\ns4\ns5\nparent-after\n");
}

#[test]
fn cancel_of_the_parent_cancels_its_unfinished_child() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("counter"));
    p.write_loop(
        "counter",
        &COUNTER.replace("initial: s1\n", "initial: s1\nlimits:\n  max_steps: 2\n"),
    );
    let parent = run_loop(&p, &["parent"], 3);
    let child = only_run_of(&p, "counter");
    let out = p.dloop(&["cancel", &parent]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(
        out.stderr
            .contains(&format!("cancelled its sub-loop run {child}")),
        "{}",
        out.stderr
    );
    for id in [&parent, &child] {
        let json = p.dloop(&["inspect", id, "--json"]).json();
        assert_eq!(json["status"], "cancelled", "{id}");
    }
    let out = p.dloop(&["status"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(!out.stdout.contains(&child), "{}", out.stdout);
}

#[test]
fn kill_9_while_a_child_step_runs_then_resume_ends_the_leftover_and_finishes() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("waiter"));
    p.write_loop("waiter", WAITER);
    let child_process = p.spawn(&["run", "parent"], &[]);
    let pid = child_process.id();
    wait_for_line(p.root(), "s2-start");
    crate::common::signal(pid, "KILL");
    let out = p.wait(child_process, Duration::from_secs(20));
    assert_eq!(out.signal, Some(9), "{}", out.render());
    let parent = only_run_of(&p, "parent");
    let child = only_run_of(&p, "waiter");
    assert!(lock_is_free(&run_dir(&p, &parent)));
    assert!(lock_is_free(&run_dir(&p, &child)));
    for id in [&parent, &child] {
        let json = p.dloop(&["inspect", id, "--json"]).json();
        assert_eq!(json["status"], "crashed", "{id}");
    }
    // The child's step 2 still waits in its own process group: the resume ends it before it
    // runs the step again, so once the re-run has announced itself, `go` reaches it alone.
    let resume = p.spawn(&["resume", &parent, "--json"], &[]);
    let rerun = poll(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(p.root().join("marker.txt")).unwrap_or_default();
        (text.lines().filter(|l| *l == "s2-start").count() == 2).then_some(())
    });
    assert!(rerun.is_some(), "step 2 was never run again");
    std::fs::write(p.root().join("go"), "").expect("write go");
    let out = p.wait(resume, Duration::from_secs(20));
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.json()["status"], "completed");
    // Every finished step once; the interrupted step 2 started twice and finished once.
    assert_eq!(
        p.read("marker.txt"),
        "s1\ns2-start\ns2-start\ns2\ns3\nparent-after\n"
    );
    verified_log(&run_dir(&p, &parent));
    let child_log = verified_log(&run_dir(&p, &child));
    assert_eq!(count(&child_log, "run_completed"), 1);
}

#[test]
fn a_child_resumed_on_its_own_then_the_parent_takes_its_result() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("counter"));
    p.write_loop(
        "counter",
        &COUNTER.replace("initial: s1\n", "initial: s1\nlimits:\n  max_steps: 2\n"),
    );
    let parent = run_loop(&p, &["parent"], 3);
    let child = only_run_of(&p, "counter");
    // A larger limit only the child can use: resume it alone.
    let out = p.dloop(&["resume", &child, "--max-steps", "10"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(
        out.stderr.contains(&format!(
            "is a sub-loop of run {parent} (state `sub`, step 1); `dloop resume {parent}` \
             continues the parent with this run's result"
        )),
        "{}",
        out.stderr
    );
    let out = p.dloop(&["resume", &parent, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.json()["status"], "completed");
    assert_eq!(p.read("marker.txt"), "s1\ns2\ns3\ns4\ns5\nparent-after\n");
    let child_log = verified_log(&run_dir(&p, &child));
    // The parent took the finished child's result: the child had two sessions, not three.
    assert_eq!(count(&child_log, "run_resumed"), 1);
}

#[test]
fn gc_keeps_a_finished_child_whose_parent_has_not_finished() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("counter"));
    p.write_loop("counter", COUNTER);
    // Killed after the child finished, before the parent recorded its result.
    let out = p.dloop_env(
        &["run", "parent"],
        &[("DLOOP_CRASH_AT", "after_side_effect:6")],
    );
    assert_eq!(out.signal, Some(9), "{}", out.render());
    let child = only_run_of(&p, "counter");
    let out = p.dloop(&["gc", "--all"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(!out.stdout.contains(&child), "{}", out.render());
    let out = p.dloop(&["resume", "parent"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(p.read("marker.txt"), "s1\ns2\ns3\ns4\ns5\nparent-after\n");
    // Once the parent has finished, both go.
    let out = p.dloop(&["gc", "--all"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(p.run_ids().is_empty(), "{:?}", p.run_ids());
}
