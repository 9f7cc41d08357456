//! Scratch folders of plain replays (`.loops/.dloop/scratch/replay-*`): a replay killed with
//! SIGKILL leaves its folder; the next replay and `dloop gc` remove it, but never the folder of
//! a replay that is alive (one whose folder lock is held), and two replays at once both work.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::TestProject;

/// Forty steps of a trivial shell action (a replay of it takes a while to walk).
fn counter_loop() -> String {
    "initial: a\nstates:\n  a:\n    shell: echo a $DLOOP_ITERATION\n    next: b\n  b:\n    shell: test $DLOOP_ITERATION -lt 40\n    on:\n      success: a\n      failure: done\n  done:\n    terminal: success\n".to_owned()
}

fn scratch(p: &TestProject) -> PathBuf {
    p.root().join(".loops/.dloop/scratch")
}

/// The `replay-*` folders, by name.
fn folders(p: &TestProject) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(scratch(p))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("replay-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A project with `counter` run once; returns it and the run id.
fn recorded() -> (TestProject, String) {
    let p = TestProject::new();
    p.write_loop("counter", &counter_loop());
    let out = p.dloop(&["run", "counter"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, _) = p.only_run();
    (p, id)
}

/// A replay SIGKILLed mid-way (by `DLOOP_CRASH_AT`): returns the folder it left.
fn killed_replay(p: &TestProject, id: &str) -> String {
    let before = folders(p);
    let out = p.dloop_env(&["replay", id], &[("DLOOP_CRASH_AT", "after_intent:5")]);
    assert_eq!(out.signal, Some(9), "{}", out.render());
    let left: Vec<String> = folders(p)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(left.len(), 1, "the killed replay left its folder: {left:?}");
    left.into_iter().next().expect("one")
}

/// A folder that a live replay holds: made and locked as a replay makes and locks its own
/// (the kernel lock is the replay's liveness; this process holds it like a replay would).
fn live_folder(p: &TestProject) -> (String, File) {
    let name = "replay-999999-000000000-0".to_owned();
    let dir = scratch(p).join(&name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let lock = File::create(dir.join("replay.lock")).expect("lock file");
    lock.try_lock().expect("free");
    (name, lock)
}

#[test]
fn the_next_replay_removes_a_killed_replays_folder_but_not_a_live_ones() {
    let (p, id) = recorded();
    let dead = killed_replay(&p, &id);
    let (live, lock) = live_folder(&p);
    let out = p.dloop(&["replay", &id]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        folders(&p),
        vec![live.clone()],
        "{dead} removed, {live} kept"
    );
    drop(lock);
    let out = p.dloop(&["replay", &id]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(folders(&p).is_empty(), "{:?}", folders(&p));
}

#[test]
fn gc_removes_a_killed_replays_folder_and_dry_run_only_lists_it() {
    let (p, id) = recorded();
    let dead = killed_replay(&p, &id);
    let (live, lock) = live_folder(&p);
    let out = p.dloop(&["gc", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(
        out.stderr.contains(&format!(
            "would remove 1 stale replay scratch folder: {dead}"
        )),
        "{}",
        out.render()
    );
    assert_eq!(folders(&p).len(), 2, "a dry run removes nothing");
    let out = p.dloop(&["gc"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(
        out.stderr
            .contains(&format!("removed 1 stale replay scratch folder: {dead}")),
        "{}",
        out.render()
    );
    assert_eq!(folders(&p), vec![live], "the live replay's folder stays");
    assert_eq!(p.run_ids(), vec![id], "the recorded run stays");
    drop(lock);
}

#[test]
fn two_replays_at_once_both_work() {
    let (p, id) = recorded();
    let dead = killed_replay(&p, &id);
    let first = p.spawn(&["replay", &id, "--json"], &[]);
    let second = p.spawn(&["replay", &id, "--json"], &[]);
    for child in [first, second] {
        let out = p.wait(child, Duration::from_secs(60));
        assert_eq!(out.code, 0, "{}", out.render());
        assert_eq!(out.json()["outcome"], "matched");
    }
    assert!(
        folders(&p).is_empty(),
        "{dead} and both replays' folders are gone"
    );
}
