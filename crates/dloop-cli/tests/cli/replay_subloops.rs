//! `dloop replay` of runs with sub-loops: a recorded `loop:` step is served from the record
//! (its outcome JSON and exit code) without creating or running a child, an edited `with:`
//! value is a divergence naming the state and the key, and `--live` runs the child for real
//! from the divergence on.

use crate::common::{TestProject, verified_log};
use crate::subloops::{of_type, run_dir, run_loop};

/// A child of five steps, each appending its name and the `tag` it was given to `marker.txt`.
const TAGGED: &str = r#"context:
  tag: none
initial: s1
states:
  s1:
    shell: echo s1 ${context.tag} >> marker.txt
    next: s2
  s2:
    shell: echo s2 ${context.tag} >> marker.txt
    next: s3
  s3:
    shell: echo s3 ${context.tag} >> marker.txt
    next: s4
  s4:
    shell: echo s4 ${context.tag} >> marker.txt
    next: s5
  s5:
    shell: echo s5 ${context.tag} >> marker.txt
    next: done
  done:
    terminal: success
"#;

/// Calls `tagged` with `tag: ${context.tag}-x`, then reads the child's outcome and appends to
/// `marker.txt` once more.
const PARENT: &str = r#"name: parent
context:
  tag: one
initial: sub
states:
  sub:
    loop: tagged
    with:
      tag: ${context.tag}-x
    capture: sub
    on: { success: after, failure: bad }
  after:
    shell: echo parent-after ${captured.sub.output} | wc -c >> marker.txt
    next: done
  done:
    terminal: success
  bad:
    terminal: failure
"#;

/// A project whose `parent` ran to its end (with its child); returns it and the parent's id.
fn parent_run() -> (TestProject, String) {
    let p = TestProject::new();
    p.write_loop("parent", PARENT);
    p.write_loop("tagged", TAGGED);
    let id = run_loop(&p, &["parent"], 0);
    assert_eq!(p.read("marker.txt").lines().count(), 6);
    (p, id)
}

/// The scratch folders plain replays left behind.
fn scratch_left(p: &TestProject) -> Vec<String> {
    std::fs::read_dir(p.root().join(".loops/.dloop/scratch"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("replay-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_recorded_sub_loop_step_is_reused_and_no_child_runs() {
    let (p, id) = parent_run();
    let marker = p.read("marker.txt");
    let runs = p.run_ids();
    assert_eq!(runs.len(), 2, "the parent and its child: {runs:?}");
    let out = p.dloop(&["replay", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let json = out.json();
    assert_eq!(json["outcome"], "matched");
    assert_eq!(json["end"]["status"], "completed");
    assert_eq!(json["end"]["state"], "done");
    let steps = json["steps"].as_array().expect("steps");
    let sub = steps
        .iter()
        .find(|s| s["state"] == "sub")
        .expect("sub step");
    assert_eq!(sub["result"], "reused", "{sub}");
    assert_eq!(sub["verdict"], "success");
    let after = steps.iter().find(|s| s["state"] == "after").expect("after");
    assert_eq!(
        after["result"], "reused",
        "the capture of the child's outcome matched"
    );
    assert_eq!(json["saved"]["actions"], 2);
    assert_eq!(p.read("marker.txt"), marker, "no child step ran");
    assert_eq!(p.run_ids(), runs, "no run was created");
    assert!(scratch_left(&p).is_empty(), "{:?}", scratch_left(&p));
    // Human output too: the same end, exit 0.
    let out = p.dloop(&["replay", &id]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(p.read("marker.txt"), marker);
    assert_eq!(p.run_ids(), runs);
}

#[test]
fn an_edited_with_value_diverges_at_the_sub_loop_state() {
    let (p, id) = parent_run();
    let marker = p.read("marker.txt");
    let runs = p.run_ids();
    p.write(
        "edited.yaml",
        &PARENT.replace("${context.tag}-x", "${context.tag}-y"),
    );
    let out = p.dloop(&["replay", &id, "edited.yaml", "--json"]);
    assert_eq!(out.code, 5, "{}", out.render());
    let json = out.json();
    let divergence = &json["divergence"];
    assert_eq!(divergence["state"], "sub");
    assert_eq!(divergence["step"], 1);
    assert_eq!(divergence["kind"], "input");
    let reason = divergence["reason"].as_str().expect("reason");
    assert!(
        reason.contains("`with.tag` changed") && reason.contains("-y"),
        "{reason}"
    );
    assert_eq!(json["steps"][0]["result"], "stopped");
    assert_eq!(p.read("marker.txt"), marker, "no child ran");
    assert_eq!(p.run_ids(), runs);
    // The human report names the state and the key.
    let out = p.dloop(&["replay", &id, "edited.yaml"]);
    assert_eq!(out.code, 5, "{}", out.render());
    assert!(
        out.stdout.contains("sub") && out.stdout.contains("with.tag"),
        "{}",
        out.render()
    );
}

#[test]
fn an_interpolated_with_value_that_changed_is_named_too() {
    let p = TestProject::new();
    // Same template in both runs; the environment it reads differs.
    p.write_loop(
        "parent",
        &PARENT.replace("${context.tag}-x", "${env.REPLAY_TAG}-x"),
    );
    p.write_loop("tagged", TAGGED);
    let out = p.dloop_env(&["run", "parent"], &[("REPLAY_TAG", "one")]);
    assert_eq!(out.code, 0, "{}", out.render());
    let id = crate::subloops::only_run_of(&p, "parent");
    let runs = p.run_ids();
    let out = p.dloop_env(&["replay", &id, "--json"], &[("REPLAY_TAG", "two")]);
    assert_eq!(out.code, 5, "{}", out.render());
    let reason = out.json()["divergence"]["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    assert!(
        reason.contains("`with.tag` differs")
            && reason.contains("one-x")
            && reason.contains("two-x"),
        "{reason}"
    );
    assert_eq!(p.run_ids(), runs, "no child ran");
    let out = p.dloop_env(&["replay", &id], &[("REPLAY_TAG", "one")]);
    assert_eq!(out.code, 0, "the same value matches: {}", out.render());
}

#[test]
fn live_replay_runs_the_child_for_real_from_the_divergence() {
    let (p, id) = parent_run();
    let runs = p.run_ids();
    p.write(
        "edited.yaml",
        &PARENT.replace("${context.tag}-x", "${context.tag}-y"),
    );
    let out = p.dloop(&["replay", &id, "edited.yaml", "--live", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let json = out.json();
    assert_eq!(json["divergence"]["state"], "sub");
    assert_eq!(json["steps"][0]["result"], "live");
    let replay = json["run_id"]
        .as_str()
        .expect("a live replay is a run")
        .to_owned();
    let marker = p.read("marker.txt");
    for step in ["s1", "s2", "s3", "s4", "s5"] {
        assert!(
            marker.contains(&format!("{step} one-y")),
            "the child ran with the new value: {marker}"
        );
    }
    let new: Vec<String> = p
        .run_ids()
        .into_iter()
        .filter(|r| !runs.contains(r))
        .collect();
    assert_eq!(new.len(), 2, "the replay and its child: {new:?}");
    let child = new
        .iter()
        .find(|r| r.starts_with("tagged-"))
        .expect("a new child");
    let log = verified_log(&run_dir(&p, &replay));
    let started = of_type(&log, "sub_loop_started");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["child_run_id"], child.as_str());
    assert_eq!(of_type(&log, "run_completed").len(), 1);
}
