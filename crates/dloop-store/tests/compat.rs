//! Logs written by earlier versions load forever: each folder under `fixtures/logs/<version>/`
//! is a run folder (`run.json`, `events.jsonl`) as that version wrote it, and must still verify,
//! fold to the same state, and read back record by record.
//!
//! v1: a `check-fix` run paused at `max_steps` 1, then resumed to completion (run_started,
//! state_entered, action_started, action_finished with a capture, evaluated, transitioned,
//! run_paused, run_resumed, run_completed; batches marked with `_more`).

use std::path::Path;

use dloop_core::state::RunStatus;
use dloop_store::{FileStore, RunHandle, Store};

/// Copies the fixture run into a fresh store (opening for writing may repair, so never in
/// place).
fn store_with(version: &str, id: &str) -> (tempfile::TempDir, FileStore) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/logs")
        .join(version)
        .join(id);
    let dir = tempfile::tempdir().expect("temp dir");
    let run_dir = dir.path().join("runs").join(id);
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    for file in ["run.json", "events.jsonl"] {
        std::fs::copy(src.join(file), run_dir.join(file)).expect("copy fixture");
    }
    let store = FileStore::new(dir.path());
    (dir, store)
}

#[test]
fn v1_check_fix_run_loads_and_folds_as_it_did() {
    let id = "check-fix-20261121T110458-bf0a";
    let (_dir, store) = store_with("v1", id);
    assert_eq!(store.run_ids().expect("lists"), vec![id.to_owned()]);
    let meta = store.read_meta(id).expect("run.json reads");
    assert_eq!(meta.loop_name, "check-fix");
    assert_eq!(
        meta.context.get("note").map(String::as_str),
        Some("hello world")
    );

    let records: Vec<_> = store
        .records_from(id, 1)
        .expect("reads")
        .collect::<Result<_, _>>()
        .expect("verifies");
    assert_eq!(records.len(), 20);
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64 + 1)
    );
    let types: Vec<&str> = records.iter().map(|r| r.event.type_name()).collect();
    assert_eq!(types.first(), Some(&"run_started"));
    assert!(types.contains(&"run_paused") && types.contains(&"run_resumed"));
    assert_eq!(types.last(), Some(&"run_completed"));

    let (state, info) = store.load_state(id).expect("folds");
    assert_eq!(info.repair, None);
    assert_eq!(state.status, RunStatus::Completed);
    assert_eq!(state.step, 3);
    assert_eq!(state.sessions, 2);
    assert_eq!(state.visits("check"), 2);
    let check = state.captures.get("check").expect("capture kept");
    assert_eq!(check.result.exit_code, Some(0));
    assert_eq!(check.verdict.as_deref(), Some("success"));

    // The writer's path (lock, verify the tail) accepts it too and can append after it.
    let mut run = store.open_run(id).expect("opens");
    let (written, _) = run.load_state().expect("loads for writing");
    assert_eq!(written, state);
}
