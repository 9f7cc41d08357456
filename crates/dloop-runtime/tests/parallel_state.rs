//! The parallel state file: every older version migrates forward with every worker intact,
//! unknown fields survive a load and a save, and a file from a newer dloop is refused and left
//! as it was.

use std::path::PathBuf;

use dloop_runtime::parallel::state::{self, SCHEMA_VERSION, WorkerStatus};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parallel")
        .join(name)
}

#[test]
fn version_1_migrates_to_the_current_version_with_every_worker_intact() {
    let loaded = state::load(&fixture("v1.json")).expect("v1 loads");
    assert_eq!(loaded.schema_version, SCHEMA_VERSION);
    let tasks: Vec<&str> = loaded.workers.iter().map(|w| w.task.as_str()).collect();
    assert_eq!(
        tasks,
        ["alpha", "beta", "delta", "gamma"],
        "no worker dropped"
    );
    let by = |task: &str| loaded.workers.iter().find(|w| w.task == task).unwrap();
    assert_eq!(by("alpha").status, WorkerStatus::Completed, "v1 `done`");
    assert_eq!(
        by("alpha").integrated.as_deref(),
        Some("1111111111111111111111111111111111111111")
    );
    assert_eq!(by("alpha").timestamps["completed"], "2026-01-01T00:01:00Z");
    assert_eq!(by("beta").status, WorkerStatus::Running);
    assert_eq!(
        by("beta").run_id.as_deref(),
        Some("edit-20260101T000002-bbbb")
    );
    assert!(by("beta").worktree.is_some());
    assert_eq!(
        by("beta").attempts,
        1,
        "a worker with a run had one attempt"
    );
    assert_eq!(by("delta").attempts, 0);
    assert_eq!(by("gamma").status, WorkerStatus::Blocked);
    assert_eq!(
        by("gamma").last_error.as_deref(),
        Some("conflict rebasing onto main in a.txt")
    );
    assert_eq!(by("gamma").context["file"], "a.txt");
    // Unknown fields, of the file and of a worker, are kept.
    assert_eq!(loaded.extra["note_from_a_later_tool"]["kept"], true);
    assert_eq!(by("gamma").extra["reviewer"], "sam");
}

#[test]
fn a_migrated_file_saves_as_the_current_version_and_keeps_unknown_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state.json");
    let loaded = state::load(&fixture("v1.json")).unwrap();
    state::save(&path, &loaded).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["schema_version"], SCHEMA_VERSION);
    assert_eq!(value["note_from_a_later_tool"]["kept"], true);
    assert_eq!(value["workers"].as_array().unwrap().len(), 4);
    assert_eq!(state::load(&path).unwrap(), loaded, "load(save(x)) == x");
}

#[test]
fn a_file_from_a_newer_version_is_refused_and_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state.json");
    std::fs::copy(fixture("v3.json"), &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = state::load(&path).expect_err("refused").to_string();
    assert!(err.contains("newer than this dloop"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "not written over");
}

#[test]
fn a_migration_that_would_drop_a_worker_is_refused() {
    let bad = serde_json::json!({
        "schema_version": 1, "id": "x", "loop_name": "x", "target": "main",
        "integrate": "merge", "jobs": 1, "created_at": "t",
        "workers": {"a": {"state": "queued"}, "b": "not an object"}
    });
    let err = state::migrate(bad).expect_err("refused");
    assert!(err.contains("worker `b`"), "{err}");
    let none = serde_json::json!({"id": "x"});
    assert!(state::migrate(none).unwrap_err().contains("schema_version"));
}
