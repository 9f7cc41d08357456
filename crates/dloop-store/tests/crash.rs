//! Real SIGKILLs at each store crash point (`DLOOP_CRASH_AT`): the test binary re-executes itself
//! in a helper mode that appends batches until the crash point kills it; the parent reopens the
//! run and checks the log is a clean prefix of whole batches.

use std::os::unix::process::ExitStatusExt;

use dloop_core::Timestamp;
use dloop_store::conformance::{batch, meta};
use dloop_store::{FileStore, RunHandle, Store};

use crate::common::{fold, read_all, store};

const BATCH: usize = 3;
const BATCHES: u64 = 5;

/// Helper process: appends `BATCHES` batches of `BATCH` events, saving a snapshot after each.
#[test]
#[ignore = "a helper process, not a test: its parent runs it with --ignored"]
fn child_append() {
    let (Ok(root), Ok("append")) = (
        std::env::var("DLOOP_STORE_ROOT"),
        std::env::var("DLOOP_STORE_CHILD").as_deref(),
    ) else {
        return;
    };
    let store = FileStore::new(root);
    let mut run = store.open_run("r").expect("child opens");
    let (mut state, _) = run.load_state().expect("child loads");
    for i in 0..BATCHES {
        for r in run
            .append(&batch(BATCH, "c"), Timestamp::from_millis(i))
            .expect("append")
        {
            state.apply(&r);
        }
        run.save_snapshot(&state).expect("snapshot");
    }
}

/// Runs the helper with `DLOOP_CRASH_AT=spec`, asserts it died by SIGKILL, then reopens and
/// returns (records after reopening, snapshot seq used, whether a tail was cut).
fn crash_at(spec: &str) -> (u64, Option<u64>, bool) {
    let (tmp, store) = store();
    drop(store.create_run(&meta("r")).expect("create"));
    let status = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "crash::child_append",
            "--ignored",
            "--test-threads=1",
        ])
        .env("DLOOP_STORE_CHILD", "append")
        .env("DLOOP_STORE_ROOT", tmp.path().join(".dloop"))
        .env("DLOOP_CRASH_AT", spec)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("spawn");
    assert_eq!(
        status.signal(),
        Some(9),
        "{spec}: child was not SIGKILLed: {status:?}"
    );

    assert!(
        !store.is_live("r").expect("is_live"),
        "{spec}: the kernel released the lock"
    );
    let mut run = store.open_run("r").expect("reopen");
    let (state, info) = run.load_state().expect("load");
    let records = read_all(&store, "r");
    assert_eq!(state, fold(&records), "{spec}");
    assert_eq!(
        records.len() % BATCH,
        0,
        "{spec}: a batch is all or nothing"
    );
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=records.len() as u64).collect::<Vec<_>>(),
        "{spec}"
    );
    // The run goes on from where it was.
    let next = run
        .append(&batch(1, "after"), Timestamp::from_millis(99))
        .expect("append");
    assert_eq!(next[0].seq, records.len() as u64 + 1, "{spec}");
    (
        records.len() as u64,
        info.snapshot_seq,
        info.repair.is_some(),
    )
}

#[test]
fn crash_before_append_loses_only_the_unwritten_batch() {
    assert_eq!(crash_at("before_append"), (0, None, false));
    assert_eq!(crash_at("before_append:3"), (6, Some(6), false));
}

#[test]
fn crash_mid_write_cuts_the_torn_batch() {
    assert_eq!(crash_at("mid_write"), (0, None, true));
    assert_eq!(crash_at("mid_write:2"), (3, Some(3), true));
}

#[test]
fn crash_before_or_after_fsync_keeps_the_written_batch() {
    // A process crash keeps what the kernel has; only power loss could lose an unsynced batch.
    assert_eq!(crash_at("before_fsync:2"), (6, Some(3), false));
    assert_eq!(crash_at("after_fsync:2"), (6, Some(3), false));
}

#[test]
fn crash_around_snapshot_rename_keeps_a_consistent_snapshot() {
    assert_eq!(crash_at("snapshot_before_rename:2"), (6, Some(3), false));
    assert_eq!(crash_at("snapshot_after_rename:2"), (6, Some(6), false));
}
