//! `dloop replay` of a run resumed with `resume -c`: the values are applied at the same point
//! of the history (before the first action the source ran after that resume), so the steps that
//! use them are reused, not diverged.

use serde_json::Value;

use crate::common::files;
use crate::common::{TestProject, verified_log};
use crate::replay::{SIX, assert_nothing_left};

#[test]
fn context_given_to_resume_is_applied_at_the_same_point_of_the_replay() {
    // Steps 1-3 run with tag x; paused by --max-steps 3, resumed with -c tag=y: steps 4-6 use y.
    let p = TestProject::new();
    p.write_loop("six", SIX);
    let out = p.dloop(&["run", "six", "--max-steps", "3"]);
    assert_eq!(out.code, 3, "{}", out.render());
    let out = p.dloop(&["resume", "six", "--max-steps", "10", "-c", "tag=y"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let trail = p.read("trail");
    assert!(
        trail.contains("a 1 x") && trail.contains("a 3 x") && trail.contains("a 5 y"),
        "{trail}"
    );
    let (id, dir) = p.only_run();
    let before = files(&dir);
    let out = p.dloop(&["replay", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let json = out.json();
    assert_eq!(json["outcome"], "matched", "{json}");
    assert_eq!(json["end"]["step"], 6);
    assert_eq!(json["saved"]["actions"], 6, "every step reused, 5 with y");
    assert_eq!(p.read("trail"), trail, "nothing ran");
    assert_eq!(files(&dir), before);
    assert_nothing_left(&p);

    // Applied where the source applied them, not from the start: a live replay's log shows
    // the pause before step 4's action (the first the source ran after its resume) and the
    // resume that sets tag=y.
    let out = p.dloop(&["replay", &id, "--live", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let replay = out.json()["run_id"].as_str().expect("run id").to_owned();
    let log = verified_log(&p.root().join(".loops/.dloop/runs").join(&replay));
    let resumed: Vec<&Value> = log.iter().filter(|r| r["type"] == "run_resumed").collect();
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(resumed[0]["context"]["tag"], "y");
    let interrupted: Vec<&Value> = log
        .iter()
        .filter(|r| r["type"] == "action_interrupted")
        .collect();
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0]["step"], 4);
    assert_eq!(
        p.read("trail"),
        trail,
        "the live replay followed the record: nothing ran"
    );
}
