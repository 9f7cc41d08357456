//! Sub-loops (`loop:` states) through the real binary: routing on the child's end, `with:`
//! bindings that arrive verbatim, the child's outcome read by the parent, the depth bound,
//! validation, spend, `status` / `inspect` / progress with a child (replay: replay_subloops.rs).
//! The lifecycle edges (kills, stops, pauses, resumes, cancel, gc) are in subloop_lifecycle.rs;
//! the helpers here serve both.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{TestProject, count, redact_runs, verified_log};

/// A child of five steps, each appending its name to `marker.txt` when it finishes.
pub(crate) const COUNTER: &str = r#"initial: s1
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

/// Runs `dloop run ARGS`, asserts its exit code, and returns the id of the run of the loop
/// named first (a sub-loop adds runs of its own).
pub(crate) fn run_loop(p: &TestProject, args: &[&str], code: i32) -> String {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    let out = p.dloop(&full);
    assert_eq!(out.code, code, "{}", out.render());
    only_run_of(p, args[0])
}

/// The folder of run `id`.
pub(crate) fn run_dir(p: &TestProject, id: &str) -> PathBuf {
    p.root().join(".loops/.dloop/runs").join(id)
}

/// The one run of loop `name` (panics unless there is exactly one).
pub(crate) fn only_run_of(p: &TestProject, name: &str) -> String {
    let ids: Vec<String> = p
        .run_ids()
        .into_iter()
        .filter(|id| id.starts_with(&format!("{name}-")))
        .collect();
    assert_eq!(ids.len(), 1, "runs of {name}: {ids:?}");
    ids.into_iter().next().expect("one run")
}

/// The records of type `ty`.
pub(crate) fn of_type<'a>(records: &'a [Value], ty: &str) -> Vec<&'a Value> {
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

pub(crate) fn parent_of(child: &str) -> String {
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
fn run_shows_the_childs_steps_under_the_parents() {
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("counter"));
    p.write_loop("counter", COUNTER);
    let out = p.dloop(&["run", "parent"]);
    assert_eq!(out.code, 0, "{}", out.render());
    insta::assert_snapshot!("subloop_run_progress", redact_runs(&out.render()));
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
