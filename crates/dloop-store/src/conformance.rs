//! The suite every [`Store`] must pass (feature `conformance`): call [`run_all`] with a
//! [`Harness`] that makes fresh, empty stores and can do to one what only its maker can (take a
//! claim away, leave a creation cut short). The file store runs it from `tests/`; a database
//! store runs the same functions. Every method of [`Store`] and [`RunHandle`](crate::RunHandle) is exercised.
//!
//! Crash atomicity (a batch is all-or-nothing after a crash at any point) depends on how a store
//! fails, so each store proves it in its own tests; the file store's kill -9 tests are in
//! `tests/crash.rs`.

use std::collections::BTreeMap;

use dloop_core::{Event, Record, RunState, Timestamp};

use crate::{RunMeta, Store, StoreError};

/// What the suite needs from a store's maker.
pub trait Harness {
    /// A fresh, empty store.
    fn store(&self) -> Box<dyn Store>;
    /// Takes the claim on run `id` away from its holder, as an outside event would (the file
    /// store: its lock file replaced; a database: the lease expired and was taken).
    fn steal_claim(&self, store: &dyn Store, id: &str);
    /// Leaves behind what a creation of run `id` cut short by a crash leaves; returns the name
    /// the leftover is listed under.
    fn leave_incomplete(&self, store: &dyn Store, id: &str) -> String;
}

/// The log reader's property on arbitrary bytes (the proptest in `tests/log_bytes.rs` and the
/// fuzz target `log_reader` share it): `events.jsonl` holding `bytes` in `dir` opens for
/// writing into gapless records from seq 1 or a clean refusal, never a panic; when it opens,
/// reopening sees the same records with nothing left to repair (a repair is final), and the
/// read-only stream agrees. Returns the records, or `None` for a refusal.
pub fn check_log_bytes(dir: &std::path::Path, bytes: &[u8]) -> Option<Vec<Record>> {
    for line in bytes.split(|b| *b == b'\n') {
        let _ = crate::record::decode_line(line);
    }
    let path = dir.join("events.jsonl");
    std::fs::write(&path, bytes).expect("the fuzz folder is writable");
    let mut records = Vec::new();
    let opened = crate::EventLog::open(&path, crate::ScanStart::BEGINNING, |r| {
        records.push(r.clone());
    });
    let (log, _repair) = opened.ok()?;
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=records.len() as u64).collect::<Vec<_>>(),
        "gapless from 1"
    );
    assert_eq!(log.last_seq(), records.len() as u64);
    drop(log);
    let mut again = Vec::new();
    let (_, repair) = crate::EventLog::open(&path, crate::ScanStart::BEGINNING, |r| {
        again.push(r.clone());
    })
    .expect("a log that opened once opens again");
    assert_eq!(repair, None, "a repair is final");
    assert_eq!(again, records, "reopening reads the same records");
    let streamed: Vec<Record> =
        crate::reader::LogReader::open(&path, crate::ScanStart::BEGINNING, 1)
            .expect("the stream opens")
            .map(|r| r.expect("a repaired log streams cleanly"))
            .collect();
    assert_eq!(streamed, records, "the read-only stream agrees");
    Some(records)
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
        worktree: None,
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

/// The fold of `records`.
pub fn fold(records: &[Record]) -> RunState {
    RunState::from_records(records)
}

fn fold_all<I: Iterator<Item = crate::Result<Record>>>(records: I) -> RunState {
    let records: Vec<Record> = records.map(|r| r.expect("records read back")).collect();
    fold(&records)
}

fn read_all(store: &dyn Store, id: &str) -> Vec<Record> {
    store
        .records_from(id, 1)
        .expect("records_from")
        .collect::<Result<Vec<_>, _>>()
        .expect("records read back")
}

/// Runs every check, each on a fresh store from `harness`.
pub fn run_all(harness: &dyn Harness) {
    create_append_read_back(&*harness.store());
    seqs_have_no_gaps(&*harness.store());
    create_twice_fails(&*harness.store());
    open_missing_fails(&*harness.store());
    open_live_run_fails(&*harness.store());
    append_needs_load_after_open(&*harness.store());
    reopen_state_equals_full_fold(&*harness.store());
    snapshot_plus_tail_equals_full_replay(&*harness.store());
    list_and_meta(&*harness.store());
    follow_sees_new_batches(&*harness.store());
    blobs_round_trip_and_names_are_checked(&*harness.store());
    output_stream_appends_and_reads_back(&*harness.store());
    delete_removes_the_run(&*harness.store());
    lost_claim_stops_writes(harness);
    incomplete_creation_is_not_a_run(harness);
}

/// The output stream: empty at first, appends readable at once (by the writer and by readers),
/// ranges read back exactly, a range past the end reads short, and a reopened stream continues
/// at its end.
pub fn output_stream_appends_and_reads_back(store: &dyn Store) {
    let mut run = store.create_run(&meta("out-1")).expect("create");
    assert_eq!(
        store.read_output("out-1", 0, None).expect("read"),
        (vec![], 0)
    );
    let mut stream = run.open_output().expect("open output");
    assert!(stream.is_empty());
    stream.append(b"hello ").expect("append");
    stream.append(b"world").expect("append");
    assert_eq!(stream.len(), 11);
    assert_eq!(
        store.read_output("out-1", 6, Some(11)).expect("read"),
        (b"world".to_vec(), 11),
        "readable before a sync"
    );
    stream.sync().expect("sync");
    assert_eq!(
        run.read_output(0, Some(5)).expect("read"),
        (b"hello".to_vec(), 5)
    );
    assert_eq!(
        run.read_output(6, Some(100)).expect("read"),
        (b"world".to_vec(), 11),
        "past the end reads what is there"
    );
    assert_eq!(run.read_output(20, None).expect("read"), (vec![], 20));
    drop(stream);
    let mut again = run.open_output().expect("reopen");
    assert_eq!(again.len(), 11);
    again.append(b"!").expect("append");
    assert_eq!(
        store.read_output("out-1", 0, None).expect("read").0,
        b"hello world!".to_vec()
    );
}

/// Appended records read back identical, from seq 1 and from a later seq.
pub fn create_append_read_back(store: &dyn Store) {
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
pub fn seqs_have_no_gaps(store: &dyn Store) {
    let mut run = store.create_run(&meta("seq-1")).expect("create");
    for n in [1, 5, 2] {
        run.append(&batch(n, "x"), Timestamp::from_millis(5))
            .expect("append");
    }
    drop(run);
    let mut run = store.open_run("seq-1").expect("open");
    run.load_state().expect("load");
    let more = run
        .append(&batch(3, "y"), Timestamp::from_millis(6))
        .expect("append");
    assert_eq!(more.iter().map(|r| r.seq).collect::<Vec<_>>(), [9, 10, 11]);
    let seqs: Vec<u64> = read_all(store, "seq-1").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
}

/// `create_run` never opens an existing run, live or not.
pub fn create_twice_fails(store: &dyn Store) {
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
pub fn open_missing_fails(store: &dyn Store) {
    assert!(matches!(
        store.open_run("nope"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.open_run("../../etc"),
        Err(StoreError::InvalidRunId { .. })
    ));
    assert!(store.run_ids().expect("ids").is_empty());
}

/// A run whose lock is held cannot be opened; readers still work.
pub fn open_live_run_fails(store: &dyn Store) {
    let mut run = store.create_run(&meta("live-1")).expect("create");
    run.append(&batch(2, "l"), Timestamp::from_millis(1))
        .expect("append");
    assert!(store.is_live("live-1").expect("is_live"));
    assert!(matches!(
        store.open_run("live-1"),
        Err(StoreError::AlreadyLive { .. })
    ));
    let (state, info) = store.load_state("live-1").expect("read-only load");
    assert_eq!((state.last_seq, info.last_seq), (2, 2));
    drop(run);
    assert!(!store.is_live("live-1").expect("is_live"));
    let _run = store.open_run("live-1").expect("open after release");
    assert!(matches!(
        store.open_run("live-1"),
        Err(StoreError::AlreadyLive { .. })
    ));
}

/// After `open_run`, appending before `load_state` is refused.
pub fn append_needs_load_after_open(store: &dyn Store) {
    drop(store.create_run(&meta("nl-1")).expect("create"));
    let mut run = store.open_run("nl-1").expect("open");
    assert_eq!(run.last_seq(), None);
    assert!(matches!(
        run.append(&batch(1, "n"), Timestamp::from_millis(1)),
        Err(StoreError::NotLoaded { .. })
    ));
    run.load_state().expect("load");
    run.append(&batch(1, "n"), Timestamp::from_millis(1))
        .expect("append after load");
}

/// The state after reopening equals the fold of every record.
pub fn reopen_state_equals_full_fold(store: &dyn Store) {
    let mut run = store.create_run(&meta("fold-1")).expect("create");
    let mut expected = RunState::default();
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
    let (state, info) = run.load_state().expect("load");
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
pub fn snapshot_plus_tail_equals_full_replay(store: &dyn Store) {
    let mut run = store.create_run(&meta("snap-1")).expect("create");
    let mut state = RunState::default();
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
    let (read, info) = store.load_state("snap-1").expect("read-only load");
    assert_eq!(read, state);
    assert_eq!((info.snapshot_seq, info.replayed), (Some(4), tail));
    drop(run);
    let mut run = store.open_run("snap-1").expect("open");
    let (loaded, info) = run.load_state().expect("load");
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
    let (again, info) = store.load_state("snap-1").expect("load");
    assert_eq!(
        (again, info.snapshot_seq, info.replayed),
        (state, Some(10), 0)
    );
}

/// `list_runs` lists created runs, sorted; `read_meta` returns what was created.
pub fn list_and_meta(store: &dyn Store) {
    for id in ["b-run", "a-run"] {
        drop(store.create_run(&meta(id)).expect("create"));
    }
    assert_eq!(store.run_ids().expect("ids"), ["a-run", "b-run"]);
    let mut run = store.open_run("b-run").expect("open");
    run.load_state().expect("load");
    run.append(&batch(2, "l"), Timestamp::from_millis(3))
        .expect("append");
    let list = store.list_runs().expect("list");
    let summary: Vec<(&str, u64, bool)> = list
        .runs
        .iter()
        .map(|r| (r.id.as_str(), r.state.last_seq, r.live))
        .collect();
    assert_eq!(summary, [("a-run", 0, false), ("b-run", 2, true)]);
    assert!(list.unreadable.is_empty() && list.incomplete.is_empty());
    let holder = store.holder("b-run").expect("holder").expect("held");
    assert_eq!(holder.pid, std::process::id());
    drop(run);
    assert_eq!(store.holder("b-run").expect("holder"), None);
    assert_eq!(store.read_meta("a-run").expect("meta"), meta("a-run"));
    assert!(matches!(
        store.read_meta("zzz"),
        Err(StoreError::NotFound { .. })
    ));
}

/// A follower sees each whole batch once, as it is appended, and nothing before its seq.
pub fn follow_sees_new_batches(store: &dyn Store) {
    let mut run = store.create_run(&meta("fol-1")).expect("create");
    let first = run
        .append(&batch(2, "a"), Timestamp::from_millis(1))
        .expect("append");
    let mut follow = store.follow("fol-1", 1).expect("follow");
    assert_eq!(follow.poll().expect("poll"), first[1..].to_vec());
    assert!(follow.poll().expect("poll").is_empty());
    let second = run
        .append(&batch(3, "b"), Timestamp::from_millis(2))
        .expect("append");
    assert_eq!(follow.poll().expect("poll"), second);
    assert!(follow.poll().expect("poll").is_empty());
}

/// Blobs read back as stored, from the handle and the store; names that could escape the run
/// or shadow its own files are refused.
pub fn blobs_round_trip_and_names_are_checked(store: &dyn Store) {
    let mut run = store.create_run(&meta("blob-1")).expect("create");
    assert_eq!(run.get_blob("definition-1.yaml").expect("get"), None);
    run.put_blob("definition-1.yaml", b"name: a\n")
        .expect("put");
    run.put_blob("definition-1.yaml", b"name: b\n")
        .expect("replace");
    assert_eq!(
        run.get_blob("definition-1.yaml").expect("get"),
        Some(b"name: b\n".to_vec())
    );
    assert_eq!(
        store.get_blob("blob-1", "definition-1.yaml").expect("get"),
        Some(b"name: b\n".to_vec())
    );
    for bad in ["../x", "a/b", "", "events.jsonl", "run.json"] {
        assert!(
            matches!(
                run.put_blob(bad, b"x"),
                Err(StoreError::InvalidBlobName { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        read_all(store, "blob-1"),
        Vec::new(),
        "blobs are not records"
    );
}

/// `delete` removes the run under its claim; it is then not found, listed or openable.
pub fn delete_removes_the_run(store: &dyn Store) {
    let mut run = store.create_run(&meta("del-1")).expect("create");
    run.append(&batch(1, "d"), Timestamp::from_millis(1))
        .expect("append");
    drop(store.create_run(&meta("del-2")).expect("create"));
    run.delete().expect("delete");
    assert_eq!(store.run_ids().expect("ids"), ["del-2"]);
    assert!(matches!(
        store.open_run("del-1"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.load_state("del-1"),
        Err(StoreError::NotFound { .. })
    ));
}

/// A holder whose claim was taken away learns it from `check_claim` and from its next write,
/// which is refused; what it wrote before stays.
pub fn lost_claim_stops_writes(harness: &dyn Harness) {
    let store = harness.store();
    let mut run = store.create_run(&meta("claim-1")).expect("create");
    let written = run
        .append(&batch(2, "c"), Timestamp::from_millis(1))
        .expect("append");
    run.check_claim().expect("holds its claim");
    harness.steal_claim(&*store, "claim-1");
    assert!(matches!(
        run.check_claim(),
        Err(StoreError::ClaimLost { .. })
    ));
    assert!(matches!(
        run.append(&batch(1, "late"), Timestamp::from_millis(2)),
        Err(StoreError::ClaimLost { .. })
    ));
    assert!(matches!(
        run.put_blob("b", b"x"),
        Err(StoreError::ClaimLost { .. })
    ));
    drop(run);
    assert_eq!(read_all(&*store, "claim-1"), written);
}

/// A creation cut short is listed as incomplete, never as a run, and can be removed.
pub fn incomplete_creation_is_not_a_run(harness: &dyn Harness) {
    let store = harness.store();
    drop(store.create_run(&meta("whole-1")).expect("create"));
    let name = harness.leave_incomplete(&*store, "cut-1");
    assert_eq!(store.run_ids().expect("ids"), ["whole-1"]);
    let list = store.list_runs().expect("list");
    assert_eq!(list.runs.len(), 1);
    assert!(list.unreadable.is_empty(), "{:?}", list.unreadable);
    let names: Vec<&str> = list.incomplete.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, [name.as_str()]);
    assert!(!list.incomplete[0].busy);
    assert!(
        !store
            .remove_incomplete("whole-1")
            .expect("a run is not a leftover")
    );
    assert!(store.remove_incomplete(&name).expect("remove"));
    assert!(store.list_runs().expect("list").incomplete.is_empty());
    assert_eq!(store.run_ids().expect("ids"), ["whole-1"]);
}
