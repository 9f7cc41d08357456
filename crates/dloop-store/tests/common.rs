//! Helpers shared by the integration tests.

use std::path::PathBuf;

use dloop_core::RunState;
use dloop_core::{Record, Timestamp};
use dloop_store::conformance::{batch, meta};
use dloop_store::{FileStore, Store};

/// A store in a fresh temp folder (kept alive by the returned guard).
pub fn store() -> (tempfile::TempDir, FileStore) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FileStore::new(tmp.path().join(".dloop"));
    (tmp, store)
}

/// Creates run `id` with `batches` batches of the given sizes; returns every record.
pub fn run_with(store: &FileStore, id: &str, sizes: &[usize]) -> Vec<Record> {
    let mut run = store.create_run(&meta(id)).expect("create");
    let mut all = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        all.extend(
            run.append(&batch(*n, "b"), Timestamp::from_millis(i as u64))
                .expect("append"),
        );
    }
    all
}

/// The run's events.jsonl.
pub fn events(store: &FileStore, id: &str) -> PathBuf {
    store.local_run_dir(id).expect("id").join("events.jsonl")
}

/// Folds records.
pub fn fold(records: &[Record]) -> RunState {
    dloop_store::conformance::fold(records)
}

/// Every record currently readable.
pub fn read_all(store: &FileStore, id: &str) -> Vec<Record> {
    store
        .records_from(id, 1)
        .expect("records")
        .map(|r| r.expect("record"))
        .collect()
}
