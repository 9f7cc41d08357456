//! Fault injection through the store's I/O seam (`dloop_store::fault`, issue 13): a failed
//! write, a short write, a failed fsync, ENOSPC and a power-loss crash at every write, fsync,
//! rename and read point of a run's life. Each must end in an error (never a panic), leave the
//! run resumable, and lose no record that `append` reported durable.

use dloop_core::{Record, Timestamp};
use dloop_store::conformance::{batch, meta};
use dloop_store::fault::{Fault, FaultPlan, Op, Seen};
use dloop_store::{FileStore, RunHandle, Store, StoreError, StoreErrorKind};

use crate::common::{fold, read_all, store};

const BATCH: usize = 3;
const BATCHES: u64 = 4;
const LOG: &str = "events.jsonl";

/// What a workload got done before its first error.
struct Outcome {
    /// Every record `append` acknowledged (durable by contract).
    acked: Vec<Record>,
    /// The first error, if any.
    error: Option<StoreError>,
    /// The handle, when the run was created.
    run: Option<Box<dyn RunHandle>>,
}

/// A run's life through the store, touching every I/O point: create it, write to its output
/// stream, sync it, store a blob, append batches and snapshot every other one, read the output
/// and the blob back, then close it, reopen it (snapshot and log reads) and append once more.
/// Stops at the first error.
fn workload(store: &FileStore) -> Outcome {
    let mut outcome = Outcome {
        acked: Vec::new(),
        error: None,
        run: None,
    };
    if let Err(e) = steps(store, &mut outcome) {
        outcome.error = Some(e);
    }
    outcome
}

fn steps(store: &FileStore, out: &mut Outcome) -> dloop_store::Result<()> {
    let run = out.run.insert(store.create_run(&meta("r"))?);
    let mut output = run.open_output()?;
    for i in 0..BATCHES {
        output.append(format!("output of step {i}\n").as_bytes())?;
        if i == 1 {
            output.sync()?;
            run.put_blob("prompt", b"a prompt")?;
        }
        let records = run.append(&batch(BATCH, "w"), Timestamp::from_millis(i))?;
        out.acked.extend(records);
        if i % 2 == 1 {
            run.save_snapshot(&fold(&out.acked))?;
        }
    }
    run.read_output(0, None)?;
    run.get_blob("prompt")?;
    drop(output);
    out.run = None;
    let run = out.run.insert(store.open_run("r")?);
    run.load_state()?;
    let records = run.append(&batch(BATCH, "resumed"), Timestamp::from_millis(BATCHES))?;
    out.acked.extend(records);
    Ok(())
}

/// Every I/O point of the workload, as a rule that picks exactly it: (op, file name, nth).
/// Names are matched as prefixes; none of the workload's names is a prefix of another with the
/// same op (`state.json.tmp` is renamed, `state.json` never is), so a rule picks one point.
fn every_point() -> Vec<(Op, String, u64)> {
    let (_tmp, store) = store();
    let plan = FaultPlan::new().install();
    let outcome = workload(&store);
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let seen = plan.seen();
    // A folder being created or deleted has a pid and a counter in its name: keep the prefix.
    let name = |s: &Seen| {
        let name = s.path.file_name().expect("a named file").to_string_lossy();
        match [".creating-", ".deleting-"]
            .iter()
            .find(|p| name.starts_with(**p))
        {
            Some(prefix) => (*prefix).to_owned(),
            None => name.into_owned(),
        }
    };
    let points: Vec<(Op, String, u64)> = seen
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let nth = seen[..=i]
                .iter()
                .filter(|t| t.op == s.op && name(t) == name(s))
                .count();
            (s.op, name(s), nth as u64)
        })
        .collect();
    for op in [Op::Write, Op::Sync, Op::SyncDir, Op::Rename, Op::Read] {
        assert!(
            points.iter().any(|p| p.0 == op),
            "the workload has no {op:?}"
        );
    }
    points
}

/// Reopens the run after a fault and checks the promise: it loads, every acknowledged record
/// is there in order (only the batch whose write or fsync failed may follow them, and only
/// when `exact` is false), the state is their fold, and appending goes on at the next seq.
fn check_resumable(store: &FileStore, acked: &[Record], exact: bool, what: &str) {
    let mut run = match store.open_run("r") {
        Ok(run) => run,
        Err(e) if e.kind() == StoreErrorKind::NotFound => {
            // The fault hit `create_run`: the run never appeared, so nothing was acknowledged.
            assert!(
                acked.is_empty(),
                "{what}: acknowledged records of a missing run"
            );
            return;
        }
        Err(e) => panic!("{what}: the run cannot be reopened: {e}"),
    };
    let (state, _info) = run
        .load_state()
        .unwrap_or_else(|e| panic!("{what}: load: {e}"));
    let records = read_all(store, "r");
    assert!(
        records.len() >= acked.len() && records[..acked.len()] == *acked,
        "{what}: an acknowledged record was lost ({} read, {} acknowledged)",
        records.len(),
        acked.len()
    );
    if exact {
        assert_eq!(
            records.len(),
            acked.len(),
            "{what}: unsynced bytes survived"
        );
    } else {
        assert!(records.len() <= acked.len() + BATCH, "{what}");
    }
    assert_eq!(
        records.len() % BATCH,
        0,
        "{what}: a batch is all or nothing"
    );
    assert_eq!(state, fold(&records), "{what}: the state is not the fold");
    let next = run
        .append(&batch(1, "after"), Timestamp::from_millis(99))
        .unwrap_or_else(|e| panic!("{what}: append after reopening: {e}"));
    assert_eq!(next[0].seq, records.len() as u64 + 1, "{what}");
}

/// Runs the workload with `fault` at the `nth` operation `op` on `file`; returns the outcome
/// after checking it failed with an I/O error.
fn fail_at(store: &FileStore, op: Op, file: &str, nth: u64, fault: Fault) -> Outcome {
    let plan = FaultPlan::new().at(op, Some(file), nth, fault).install();
    let outcome = workload(store);
    assert!(plan.fired(), "{op:?} #{nth} on {file} never happened");
    drop(plan);
    let error = outcome
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("{fault:?} at {op:?} #{nth} on {file} did not surface"));
    assert_eq!(error.kind(), StoreErrorKind::Io, "{error}");
    outcome
}

#[test]
fn failed_log_write_poisons_the_handle_and_keeps_every_durable_batch() {
    let (_tmp, store) = store();
    let mut outcome = fail_at(&store, Op::Write, LOG, 3, Fault::Fail(libc::EIO));
    assert_eq!(outcome.acked.len(), 2 * BATCH);
    let error = outcome.error.expect("failed").to_string();
    assert!(
        error.contains("append to") && error.contains(LOG),
        "{error}"
    );
    let run = outcome.run.as_mut().expect("created");
    let again = run.append(&batch(1, "x"), Timestamp::from_millis(9));
    assert!(
        matches!(again, Err(StoreError::Poisoned { .. })),
        "{again:?}"
    );
    drop(outcome.run);
    check_resumable(&store, &outcome.acked, true, "failed write");
}

#[test]
fn short_log_write_is_cut_on_reopen_and_the_run_goes_on() {
    let (_tmp, store) = store();
    let short = Fault::Short {
        keep: 40,
        errno: libc::ENOSPC,
    };
    let outcome = fail_at(&store, Op::Write, LOG, 2, short);
    assert_eq!(outcome.acked.len(), BATCH);
    drop(outcome.run);
    let log = crate::common::events(&store, "r");
    let torn = std::fs::metadata(&log).expect("log").len();
    check_resumable(&store, &outcome.acked, true, "short write");
    // The torn 40 bytes were cut (and a one-record batch appended by the check).
    let records = read_all(&store, "r");
    assert_eq!(records.len(), BATCH + 1);
    assert!(torn > 0);
}

#[test]
fn failed_fdatasync_poisons_the_handle_and_is_never_retried() {
    let (_tmp, store) = store();
    let plan = FaultPlan::new()
        .at(Op::Sync, Some(LOG), 2, Fault::Fail(libc::EIO))
        .install();
    let mut outcome = workload(&store);
    let error = outcome.error.as_ref().expect("the fsync failure surfaces");
    assert!(error.to_string().contains("fdatasync"), "{error}");
    let run = outcome.run.as_mut().expect("created");
    for _ in 0..3 {
        let again = run.append(&batch(1, "x"), Timestamp::from_millis(9));
        assert!(
            matches!(again, Err(StoreError::Poisoned { .. })),
            "{again:?}"
        );
    }
    let seen = plan.seen();
    let failed = seen
        .iter()
        .position(|s| s.fault.is_some())
        .expect("the rule fired");
    assert!(
        seen[failed + 1..]
            .iter()
            .all(|s| !s.path.ends_with(LOG) || s.op == Op::Read),
        "the poisoned handle touched the log again: {:?}",
        &seen[failed + 1..]
    );
    drop(plan);
    drop(outcome.run);
    // The batch whose fsync failed may or may not be in the file: never counted as durable.
    check_resumable(&store, &outcome.acked, false, "failed fdatasync");
}

#[test]
fn enospc_at_every_io_point_stops_cleanly_and_loses_no_durable_record() {
    for (op, file, nth) in every_point() {
        let what = format!("ENOSPC at {op:?} #{nth} on {file}");
        let (_tmp, store) = store();
        if op == Op::Read && file == "state.json" {
            // The snapshot is a cache: a failed read of it means replaying the whole log.
            let plan = FaultPlan::new()
                .at(op, Some(&file), nth, Fault::Fail(libc::ENOSPC))
                .install();
            let outcome = workload(&store);
            assert!(plan.fired() && outcome.error.is_none(), "{what}");
            assert_eq!(outcome.acked.len(), (BATCHES as usize + 1) * BATCH);
            continue;
        }
        let outcome = fail_at(&store, op, &file, nth, Fault::Fail(libc::ENOSPC));
        let error = outcome.error.as_ref().expect("failed");
        let source = std::error::Error::source(error).map(ToString::to_string);
        assert!(
            source.is_some_and(|s| s.contains("No space left")),
            "{what}: {error}"
        );
        drop(outcome.run);
        check_resumable(&store, &outcome.acked, false, &what);
    }
}

#[test]
fn crash_after_log_write_before_fsync_loses_only_the_unsynced_batch() {
    for nth in 1..=BATCHES {
        let (_tmp, store) = store();
        let plan = FaultPlan::new()
            .at(Op::Sync, Some(LOG), nth, Fault::Crash)
            .install();
        let outcome = workload(&store);
        assert!(outcome.error.is_some(), "fsync #{nth}: the crash surfaces");
        assert_eq!(outcome.acked.len(), (nth as usize - 1) * BATCH);
        drop(outcome.run);
        let log = crate::common::events(&store, "r");
        let live = std::fs::metadata(&log).expect("log").len();
        plan.crash_image().expect("crash image");
        let durable = std::fs::metadata(&log).expect("log").len();
        assert!(
            durable < live,
            "fsync #{nth}: the unsynced batch was not dropped"
        );
        check_resumable(
            &store,
            &outcome.acked,
            true,
            &format!("crash at fsync #{nth}"),
        );
    }
}

#[test]
fn crash_at_every_io_point_leaves_a_resumable_run_with_every_durable_record() {
    for (op, file, nth) in every_point() {
        let what = format!("crash at {op:?} #{nth} on {file}");
        let (_tmp, store) = store();
        let plan = FaultPlan::new()
            .at(op, Some(&file), nth, Fault::Crash)
            .install();
        let outcome = workload(&store);
        assert!(outcome.error.is_some(), "{what}: the crash surfaces");
        drop(outcome.run);
        plan.crash_image()
            .unwrap_or_else(|e| panic!("{what}: crash image: {e}"));
        check_resumable(&store, &outcome.acked, true, &what);
    }
}

#[test]
fn failed_read_of_the_log_refuses_to_load_and_modifies_nothing() {
    let (_tmp, store) = store();
    let outcome = workload(&store);
    assert!(outcome.error.is_none());
    drop(outcome.run);
    let log = crate::common::events(&store, "r");
    let before = std::fs::read(&log).expect("log");
    let plan = FaultPlan::new()
        .at(Op::Read, Some(LOG), 1, Fault::Fail(libc::EIO))
        .install();
    let mut run = store.open_run("r").expect("open takes the lock");
    let error = run.load_state().expect_err("the read fails");
    assert_eq!(error.kind(), StoreErrorKind::Io, "{error}");
    assert!(error.to_string().contains(LOG), "{error}");
    let refused = run.append(&batch(1, "x"), Timestamp::from_millis(9));
    assert!(
        refused.is_err(),
        "appending without a loaded log is refused"
    );
    drop((run, plan));
    assert_eq!(std::fs::read(&log).expect("log"), before);
    check_resumable(&store, &outcome.acked, true, "failed read");
}

#[test]
fn failed_snapshot_rename_keeps_the_log_and_the_previous_snapshot() {
    let (_tmp, store) = store();
    // The snapshot after batch 4 is the second rename of state.json.tmp.
    let outcome = fail_at(
        &store,
        Op::Rename,
        "state.json.tmp",
        2,
        Fault::Fail(libc::EIO),
    );
    assert_eq!(outcome.acked.len(), BATCHES as usize * BATCH);
    assert!(outcome.run.is_some());
    drop(outcome.run);
    let (_, info) = store.load_state("r").expect("loads");
    assert_eq!(info.snapshot_seq, Some(2 * BATCH as u64));
    check_resumable(&store, &outcome.acked, true, "failed snapshot rename");
}
