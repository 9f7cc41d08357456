//! The suite every [`Store`] must pass (feature `conformance`): call [`run_all`] with a factory
//! that returns a fresh, empty store each time. The file store runs it from `tests/`; a database
//! store runs the same functions.
//!
//! Crash atomicity (a batch is all-or-nothing after a crash at any point) depends on how a store
//! fails, so each store proves it in its own tests; the file store's kill -9 tests are in
//! `tests/crash.rs`.

use std::collections::BTreeMap;

use dloop_core::{Event, Record, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{Fold, RunHandle, RunMeta, Store, StoreError};

/// An order-sensitive fold used by the suite: any lost, repeated or reordered record changes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestFold {
    /// Records folded.
    pub count: u64,
    /// Seq of the last one.
    pub last_seq: u64,
    /// Hash of (seq, type, ts) of every record, in order.
    pub digest: u64,
}

impl Fold for TestFold {
    fn apply(&mut self, record: &Record) {
        self.count += 1;
        self.last_seq = record.seq;
        let mut h = self.digest.wrapping_mul(0x100_0000_01b3) ^ record.seq;
        for b in record.event.type_name().bytes() {
            h = h.wrapping_mul(31).wrapping_add(u64::from(b));
        }
        self.digest = h.wrapping_mul(31).wrapping_add(record.ts.as_millis());
    }
}

/// A `run.json` for tests.
pub fn meta(id: &str) -> RunMeta {
    let definition = "name: demo\ninitial: a\n".to_owned();
    RunMeta {
        id: id.to_owned(),
        loop_name: "demo".to_owned(),
        definition_sha256: RunMeta::sha256_hex(&definition),
        definition,
        context: BTreeMap::from([("k".to_owned(), "v w".to_owned())]),
        argv: vec!["dloop".to_owned(), "run".to_owned(), "demo".to_owned()],
        created_at: Timestamp::from_millis(1_795_170_430_123),
        project_root: "/project".to_owned(),
        loop_path: None,
        started: None,
    }
}

/// A batch of `n` small events.
pub fn batch(n: usize, tag: &str) -> Vec<Event> {
    (0..n)
        .map(|i| Event::StateEntered {
            state: format!("{tag}-{i}"),
            step: i as u64,
            visit: 1,
        })
        .collect()
}

fn fold_all<I: Iterator<Item = crate::Result<Record>>>(records: I) -> TestFold {
    let mut fold = TestFold::default();
    for r in records {
        fold.apply(&r.expect("records read back"));
    }
    fold
}

fn read_all<S: Store>(store: &S, id: &str) -> Vec<Record> {
    store
        .records_from(id, 1)
        .expect("records_from")
        .collect::<Result<Vec<_>, _>>()
        .expect("records read back")
}

/// Runs every check, each on a fresh store from `factory`.
pub fn run_all<S: Store>(factory: impl Fn() -> S) {
    create_append_read_back(&factory());
    seqs_have_no_gaps(&factory());
    create_twice_fails(&factory());
    open_missing_fails(&factory());
    open_live_run_fails(&factory());
    append_needs_load_after_open(&factory());
    reopen_state_equals_full_fold(&factory());
    snapshot_plus_tail_equals_full_replay(&factory());
    list_and_meta(&factory());
}

/// Appended records read back identical, from seq 1 and from a later seq.
pub fn create_append_read_back<S: Store>(store: &S) {
    let mut run = store.create_run(&meta("rb-1")).expect("create");
    assert_eq!(run.id(), "rb-1");
    assert_eq!(run.last_seq(), Some(0));
    assert!(
        run.append(&[], Timestamp::from_millis(1))
            .expect("empty append")
            .is_empty()
    );
    let mut written = run
        .append(&batch(3, "a"), Timestamp::from_millis(10))
        .expect("append");
    written.extend(
        run.append(&batch(1, "b"), Timestamp::from_millis(20))
            .expect("append"),
    );
    assert_eq!(read_all(store, "rb-1"), written);
    let from_handle: Vec<Record> = run
        .records_from(3)
        .expect("records_from")
        .map(|r| r.expect("record"))
        .collect();
    assert_eq!(from_handle, written[2..].to_vec());
    let tail: Vec<Record> = store
        .records_from("rb-1", 4)
        .expect("records_from")
        .map(|r| r.expect("record"))
        .collect();
    assert_eq!(tail, written[3..].to_vec());
}

/// Seqs run 1..=N across batches and reopenings.
pub fn seqs_have_no_gaps<S: Store>(store: &S) {
    let mut run = store.create_run(&meta("seq-1")).expect("create");
    for n in [1, 5, 2] {
        run.append(&batch(n, "x"), Timestamp::from_millis(5))
            .expect("append");
    }
    drop(run);
    let mut run = store.open_run("seq-1").expect("open");
    run.load_state::<TestFold>().expect("load");
    let more = run
        .append(&batch(3, "y"), Timestamp::from_millis(6))
        .expect("append");
    assert_eq!(more.iter().map(|r| r.seq).collect::<Vec<_>>(), [9, 10, 11]);
    let seqs: Vec<u64> = read_all(store, "seq-1").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
}

/// `create_run` never opens an existing run, live or not.
pub fn create_twice_fails<S: Store>(store: &S) {
    let run = store.create_run(&meta("dup-1")).expect("create");
    assert!(matches!(
        store.create_run(&meta("dup-1")),
        Err(StoreError::AlreadyExists { .. })
    ));
    drop(run);
    assert!(matches!(
        store.create_run(&meta("dup-1")),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.create_run(&meta("../x")),
        Err(StoreError::InvalidRunId { .. })
    ));
}

/// `open_run` never creates.
pub fn open_missing_fails<S: Store>(store: &S) {
    assert!(matches!(
        store.open_run("nope"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.open_run("../../etc"),
        Err(StoreError::InvalidRunId { .. })
    ));
    assert!(store.list_runs().expect("list").is_empty());
}

/// A run whose lock is held cannot be opened; readers still work.
pub fn open_live_run_fails<S: Store>(store: &S) {
    let mut run = store.create_run(&meta("live-1")).expect("create");
    run.append(&batch(2, "l"), Timestamp::from_millis(1))
        .expect("append");
    assert!(store.is_live("live-1").expect("is_live"));
    assert!(matches!(
        store.open_run("live-1"),
        Err(StoreError::AlreadyLive { .. })
    ));
    let (state, info) = store
        .load_state::<TestFold>("live-1")
        .expect("read-only load");
    assert_eq!((state.count, info.last_seq), (2, 2));
    drop(run);
    assert!(!store.is_live("live-1").expect("is_live"));
    let _run = store.open_run("live-1").expect("open after release");
    assert!(matches!(
        store.open_run("live-1"),
        Err(StoreError::AlreadyLive { .. })
    ));
}

/// After `open_run`, appending before `load_state` is refused.
pub fn append_needs_load_after_open<S: Store>(store: &S) {
    drop(store.create_run(&meta("nl-1")).expect("create"));
    let mut run = store.open_run("nl-1").expect("open");
    assert_eq!(run.last_seq(), None);
    assert!(matches!(
        run.append(&batch(1, "n"), Timestamp::from_millis(1)),
        Err(StoreError::NotLoaded { .. })
    ));
    run.load_state::<TestFold>().expect("load");
    run.append(&batch(1, "n"), Timestamp::from_millis(1))
        .expect("append after load");
}

/// The state after reopening equals the fold of every record.
pub fn reopen_state_equals_full_fold<S: Store>(store: &S) {
    let mut run = store.create_run(&meta("fold-1")).expect("create");
    let mut expected = TestFold::default();
    for i in 0..7 {
        for r in run
            .append(&batch(i % 3 + 1, "f"), Timestamp::from_millis(i as u64))
            .expect("a")
        {
            expected.apply(&r);
        }
    }
    drop(run);
    let mut run = store.open_run("fold-1").expect("open");
    let (state, info) = run.load_state::<TestFold>().expect("load");
    assert_eq!(state, expected);
    assert_eq!(
        state,
        fold_all(store.records_from("fold-1", 1).expect("records"))
    );
    assert_eq!(
        (info.snapshot_seq, info.repair, info.last_seq),
        (None, None, expected.last_seq)
    );
}

/// Snapshot plus the tail after it equals a full replay, for the writer and for readers.
pub fn snapshot_plus_tail_equals_full_replay<S: Store>(store: &S) {
    let mut run = store.create_run(&meta("snap-1")).expect("create");
    let mut state = TestFold::default();
    for r in run
        .append(&batch(4, "s"), Timestamp::from_millis(1))
        .expect("append")
    {
        state.apply(&r);
    }
    run.save_snapshot(&state).expect("snapshot");
    let mut tail = 0;
    for i in 0..3 {
        for r in run
            .append(&batch(2, "t"), Timestamp::from_millis(2 + i))
            .expect("append")
        {
            state.apply(&r);
            tail += 1;
        }
    }
    let (read, info) = store
        .load_state::<TestFold>("snap-1")
        .expect("read-only load");
    assert_eq!(read, state);
    assert_eq!((info.snapshot_seq, info.replayed), (Some(4), tail));
    drop(run);
    let mut run = store.open_run("snap-1").expect("open");
    let (loaded, info) = run.load_state::<TestFold>().expect("load");
    assert_eq!(loaded, state);
    assert_eq!(
        (info.snapshot_seq, info.replayed, info.last_seq),
        (Some(4), tail, 10)
    );
    assert_eq!(
        loaded,
        fold_all(store.records_from("snap-1", 1).expect("records"))
    );
    // A snapshot at the very end replays nothing.
    run.save_snapshot(&loaded).expect("snapshot");
    drop(run);
    let (again, info) = store.load_state::<TestFold>("snap-1").expect("load");
    assert_eq!(
        (again, info.snapshot_seq, info.replayed),
        (state, Some(10), 0)
    );
}

/// `list_runs` lists created runs, sorted; `read_meta` returns what was created.
pub fn list_and_meta<S: Store>(store: &S) {
    for id in ["b-run", "a-run"] {
        drop(store.create_run(&meta(id)).expect("create"));
    }
    assert_eq!(store.list_runs().expect("list"), ["a-run", "b-run"]);
    assert_eq!(store.read_meta("a-run").expect("meta"), meta("a-run"));
    assert!(matches!(
        store.read_meta("zzz"),
        Err(StoreError::NotFound { .. })
    ));
}
