//! Sub-loops (`loop:` states) through the real binary: routing on the child's end, `with:`
//! bindings that arrive verbatim, the child's outcome read by the parent, the depth bound, and
//! the lifecycle edges: SIGKILL while the child runs (and between noting the child's id and
//! creating it), a stop during the child, then resume of the parent; `status` and `inspect`
//! with a child.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{TestProject, count, lock_is_free, poll, redact_runs, verified_log};

/// Runs `dloop run ARGS`, asserts its exit code, and returns the id of the run of the loop
/// named first (a sub-loop adds runs of its own).
fn run_loop(p: &TestProject, args: &[&str], code: i32) -> String {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    let out = p.dloop(&full);
    assert_eq!(out.code, code, "{}", out.render());
    only_run_of(p, args[0])
}

/// The folder of run `id`.
fn run_dir(p: &TestProject, id: &str) -> PathBuf {
    p.root().join(".loops/.dloop/runs").join(id)
}

/// The one run of loop `name` (panics unless there is exactly one).
fn only_run_of(p: &TestProject, name: &str) -> String {
    let ids: Vec<String> = p
        .run_ids()
        .into_iter()
        .filter(|id| id.starts_with(&format!("{name}-")))
        .collect();
    assert_eq!(ids.len(), 1, "runs of {name}: {ids:?}");
    ids.into_iter().next().expect("one run")
}

/// The records of type `ty`.
fn of_type<'a>(records: &'a [Value], ty: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == ty).collect()
}

const PARENT: &str = r#"name: parent
initial: sub
states:
  sub:
    loop: ${CHILD}
    capture: sub
    on: { success: after, failure: bad }
  after:
    shell: echo parent-after >> marker.txt
    next: done
  done:
    terminal: success
  bad:
    terminal: failure
"#;

fn parent_of(child: &str) -> String {
    PARENT.replace("${CHILD}", child)
}

#[test]
fn success_and_failure_route_through_a_sub_loop() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("ok"));
    p.write_loop(
        "ok",
        "initial: a\nstates:\n  a:\n    shell: echo child-ran\n    next: done\n  done:\n    terminal: success\n",
    );
    let parent = run_loop(&p, &["parent"], 0);
    let child = only_run_of(&p, "ok");
    let parent_log = verified_log(&run_dir(&p, &parent));
    let child_log = verified_log(&run_dir(&p, &child));
    // The parent's log names the child before the step's result, the child names its parent.
    let started = of_type(&parent_log, "sub_loop_started");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["child_run_id"], child.as_str());
    assert_eq!(started[0]["state"], "sub");
    assert_eq!(child_log[1]["type"], "sub_loop_of");
    assert_eq!(child_log[1]["run_id"], parent.as_str());
    assert_eq!(child_log[1]["depth"], 1);
    let finished = of_type(&parent_log, "action_finished");
    assert_eq!(finished[0]["exit_code"], 0);
    assert_eq!(p.read("marker.txt"), "parent-after\n");
    // JSON shapes carry the link both ways.
    let parent_json = p.dloop(&["inspect", &parent, "--json"]).json();
    assert_eq!(parent_json["children"][0]["run_id"], child.as_str());
    assert_eq!(parent_json["children"][0]["step"], 1);
    assert_eq!(parent_json["children"][0]["status"], "completed");
    let child_json = p.dloop(&["inspect", &child, "--json"]).json();
    assert_eq!(child_json["parent"]["run_id"], parent.as_str());
    assert_eq!(child_json["parent"]["state"], "sub");
    assert!(child_json.get("children").is_none());

    // A child that fails routes the parent's `failure`.
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("no"));
    p.write_loop(
        "no",
        "initial: a\nstates:\n  a:\n    shell: echo nope; exit 3\n    on: { success: done, failure: bad }\n  done:\n    terminal: success\n  bad:\n    terminal: failure\n",
    );
    let out = p.dloop(&["run", "parent"]);
    assert_eq!(out.code, 1, "{}", out.render());
    let parent = only_run_of(&p, "parent");
    let child = only_run_of(&p, "no");
    let json = p.dloop(&["inspect", &parent, "--json"]).json();
    assert_eq!(json["status"], "failed");
    assert_eq!(json["state"], "bad");
    assert_eq!(json["captures"]["sub"]["exit_code"], 1);
    assert_eq!(json["captures"]["sub"]["verdict"], "failure");
    let child_json = p.dloop(&["inspect", &child, "--json"]).json();
    assert_eq!(child_json["status"], "failed");
    assert!(!p.root().join("marker.txt").exists());
}

#[test]
fn with_binds_hostile_values_verbatim() {
    let p = TestProject::new();
    p.write_loop(
        "parent",
        r#"name: parent
initial: sub
context:
  value: plain
states:
  sub:
    loop: echoer
    with:
      said: ${context.value}
      fixed: "a ${context.value} b"
    next: done
  done:
    terminal: success
"#,
    );
    p.write_loop(
        "echoer",
        r#"initial: write
context:
  said: ""
  fixed: ""
states:
  write:
    shell: printf '%s' ${context.said} > said.txt; printf '%s' ${context.fixed} > fixed.txt
    next: done
  done:
    terminal: success
"#,
    );
    let hostile = "it's \"q\" $(touch pwned) `touch pwned2` ${HOME}\nsecond line; rm -rf x";
    let value = format!("value={hostile}");
    let out = p.dloop(&["run", "parent", "-c", &value]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(p.read("said.txt"), hostile);
    assert_eq!(p.read("fixed.txt"), format!("a {hostile} b"));
    assert!(!p.root().join("pwned").exists());
    assert!(!p.root().join("pwned2").exists());
    let child = only_run_of(&p, "echoer");
    let json = p.dloop(&["inspect", &child, "--json"]).json();
    assert_eq!(json["context"]["said"], hostile);
    assert_eq!(json["context"]["fixed"], format!("a {hostile} b"));
}

#[test]
fn the_parent_reads_the_childs_final_context_and_captures() {
    let p = TestProject::new();
    p.write_loop(
        "parent",
        r#"name: parent
initial: ask
states:
  ask:
    loop: answer
    with:
      question: life
    capture: sub
    evaluate: { type: json, path: captured.answer.output, target: "42" }
    on: { success: show, failure: bad }
  show:
    shell: printf '%s' ${captured.sub.output} > outcome.json
    next: done
  done:
    terminal: success
  bad:
    terminal: failure
"#,
    );
    p.write_loop(
        "answer",
        r#"initial: think
context:
  question: ""
states:
  think:
    shell: printf 42
    capture: answer
    next: done
  done:
    terminal: success
"#,
    );
    run_loop(&p, &["parent"], 0);
    let child = only_run_of(&p, "answer");
    let outcome: Value = serde_json::from_str(&p.read("outcome.json")).expect("outcome JSON");
    assert_eq!(outcome["run_id"], child.as_str());
    assert_eq!(outcome["loop"], "answer");
    assert_eq!(outcome["status"], "completed");
    assert_eq!(outcome["state"], "done");
    assert_eq!(outcome["context"]["question"], "life");
    assert_eq!(outcome["captured"]["answer"]["output"], "42");
    assert_eq!(outcome["captured"]["answer"]["exit_code"], 0);
    assert_eq!(outcome["captured"]["answer"]["verdict"], "success");
    // `dloop output PARENT 1` prints the same document.
    let out = p.dloop(&["output", &only_run_of(&p, "parent"), "1"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let printed: Value = serde_json::from_str(out.stdout.trim()).expect("output is JSON");
    assert_eq!(printed, outcome);
}

#[test]
fn depth_is_bounded_at_run_time() {
    // A chain l0 -> l1 -> ... -> l9 without a cycle: validation accepts it, the run refuses
    // to create l9 (depth 9) and the failure travels back up.
    let p = TestProject::new();
    for i in 0..9 {
        p.write_loop(
            &format!("l{i}"),
            &format!(
                "initial: sub\nstates:\n  sub:\n    loop: l{}\n    on: {{ success: done, failure: bad, error: bad }}\n  done:\n    terminal: success\n  bad:\n    terminal: failure\n",
                i + 1
            ),
        );
    }
    p.write_loop(
        "l9",
        "initial: a\nstates:\n  a:\n    shell: echo deepest > deepest.txt\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["validate"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let out = p.dloop(&["run", "l0"]);
    assert_eq!(out.code, 1, "{}", out.render());
    assert!(!p.root().join("deepest.txt").exists());
    assert!(p.run_ids().iter().all(|id| !id.starts_with("l9-")));
    let l8 = only_run_of(&p, "l8");
    let json = p.dloop(&["inspect", &l8, "--json"]).json();
    assert_eq!(json["parent"]["depth"], 8);
    assert_eq!(json["status"], "failed");
    let error = json["states"]["sub"]["last_output"].clone();
    let log = verified_log(&run_dir(&p, &l8));
    let finished = of_type(&log, "action_finished");
    let why = finished[0]["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("depth 9") && why.contains("at most 8"),
        "{why} / {error}"
    );
    for i in 0..9 {
        let id = only_run_of(&p, &format!("l{i}"));
        let json = p.dloop(&["inspect", &id, "--json"]).json();
        assert_eq!(json["status"], "failed", "l{i}");
    }
}

/// A child of five steps, each appending its name to `marker.txt` when it finishes.
const COUNTER: &str = r#"initial: s1
states:
  s1:
    shell: echo s1 >> marker.txt
    next: s2
  s2:
    shell: echo s2 >> marker.txt
    next: s3
  s3:
    shell: echo s3 >> marker.txt
    next: s4
  s4:
    shell: echo s4 >> marker.txt
    next: s5
  s5:
    shell: echo s5 >> marker.txt
    next: done
  done:
    terminal: success
"#;

/// Runs `parent` (whose child is `counter`) with `DLOOP_CRASH_AT=crash_at`, asserts it died of
/// SIGKILL, resumes the parent and checks that every step ran exactly once.
fn crash_then_resume(crash_at: &str) -> TestProject {
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
fn status_and_inspect_show_the_child_under_its_parent() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("counter"));
    p.write_loop(
        "counter",
        &COUNTER.replace("initial: s1\n", "initial: s1\nlimits:\n  max_steps: 2\n"),
    );
    p.write_loop(
        "other",
        "initial: a\nlimits:\n  max_steps: 1\nstates:\n  a:\n    shell: echo other\n    next: b\n  b:\n    shell: echo b\n    next: done\n  done:\n    terminal: success\n",
    );
    run_loop(&p, &["parent"], 3);
    run_loop(&p, &["other"], 3);
    let status = p.dloop(&["status"]);
    assert_eq!(status.code, 0, "{}", status.render());
    let lines: Vec<&str> = status.stdout.lines().collect();
    let parent_row = lines.iter().position(|l| l.starts_with("parent-"));
    let child_row = lines.iter().position(|l| l.starts_with("└ counter-"));
    assert_eq!(
        child_row,
        parent_row.map(|r| r + 1),
        "the child is right under its parent:\n{}",
        status.stdout
    );
    insta::assert_snapshot!("subloop_status", redact_runs(&status.render()));
    let inspect = p.dloop(&["inspect", "parent"]);
    assert_eq!(inspect.code, 0, "{}", inspect.render());
    insta::assert_snapshot!("subloop_inspect_parent", redact_runs(&inspect.render()));
    let inspect = p.dloop(&["inspect", "counter"]);
    assert_eq!(inspect.code, 0, "{}", inspect.render());
    insta::assert_snapshot!("subloop_inspect_child", redact_runs(&inspect.render()));
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
fn run_shows_the_childs_steps_under_the_parents() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("counter"));
    p.write_loop("counter", COUNTER);
    let out = p.dloop(&["run", "parent"]);
    assert_eq!(out.code, 0, "{}", out.render());
    insta::assert_snapshot!("subloop_run_progress", redact_runs(&out.render()));
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
fn a_large_child_capture_reaches_the_parent_whole() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("big"));
    p.write_loop(
        "big",
        "initial: a\nstates:\n  a:\n    shell: seq 1 3000\n    capture: numbers\n    next: done\n  done:\n    terminal: success\n",
    );
    let parent = run_loop(&p, &["parent"], 0);
    let out = p.dloop(&["output", &parent, "1"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let outcome: Value = serde_json::from_str(out.stdout.trim()).expect("output is JSON");
    let expected: String = (1..=3000).map(|n| format!("{n}\n")).collect();
    assert!(expected.len() > 4096, "bigger than the log's excerpt");
    assert_eq!(outcome["captured"]["numbers"]["output"], expected.as_str());
}

#[test]
fn the_childs_agent_spend_counts_in_the_parent() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("agentic"));
    p.write_loop(
        "agentic",
        "initial: fix\nstates:\n  fix:\n    prompt: Make the check pass\n    runner: claude\n    next: done\n  done:\n    terminal: success\n",
    );
    let path = format!(
        "{}:{}",
        crate::common::repo_root()
            .join("tests/fixtures/agents")
            .display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // `--no-llm` is inherited: the child's prompt state is judged by its agent's outcome.
    let out = p.dloop_env(&["run", "parent", "--no-llm"], &[("PATH", path.as_str())]);
    assert_eq!(out.code, 0, "{}", out.render());
    let parent = only_run_of(&p, "parent");
    let child = only_run_of(&p, "agentic");
    let child_json = p.dloop(&["inspect", &child, "--json"]).json();
    let parent_json = p.dloop(&["inspect", &parent, "--json"]).json();
    assert_eq!(child_json["agent"]["invocations"], 1);
    for key in ["tokens_in", "tokens_out", "tokens_cached", "cost_usd"] {
        assert_eq!(
            parent_json["agent"][key], child_json["agent"][key],
            "{key}: {}",
            parent_json["agent"]
        );
    }
    assert_eq!(parent_json["states"]["sub"]["agent"]["invocations"], 1);
    assert_eq!(count(&verified_log(&run_dir(&p, &child)), "judged"), 0);
}

#[test]
fn validate_names_a_with_key_the_child_never_reads() {
    let p = TestProject::new();
    p.write_loop(
        "parent",
        "initial: sub\nstates:\n  sub:\n    loop: child\n    with:\n      greting: hi\n      extra: ${context.extra?}\n    next: done\n  done:\n    terminal: success\n",
    );
    p.write_loop(
        "child",
        "initial: a\ncontext:\n  greeting: hello\nstates:\n  a:\n    shell: echo ${context.greeting} ${context.extra:default=none}\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.render());
    insta::assert_snapshot!("subloop_with_typo", out.render());
    let out = p.dloop(&["run", "parent"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(p.run_ids().is_empty(), "nothing ran: {:?}", p.run_ids());
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

#[test]
fn replay_refuses_a_loop_with_a_sub_loop() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("counter"));
    p.write_loop("counter", COUNTER);
    let parent = run_loop(&p, &["parent"], 0);
    let runs_before = p.run_ids();
    let out = p.dloop(&["replay", &parent]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stderr
            .contains("state `sub` runs a sub-loop, which `dloop replay` cannot replay yet"),
        "{}",
        out.stderr
    );
    assert_eq!(p.run_ids(), runs_before, "no child ran for real");
    assert_eq!(p.read("marker.txt").lines().count(), 6);
}
