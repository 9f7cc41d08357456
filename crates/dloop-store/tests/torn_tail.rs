//! A damaged or unfinished tail is cut on open for writing (and reported), ignored by readers,
//! and appends continue with the right seq.

use std::io::Write;

use dloop_core::{Record, Timestamp};
use dloop_store::conformance::batch;
use dloop_store::record::encode;
use dloop_store::{Damage, RunHandle, Store};
use dloop_store::{EventLog, ScanStart};
use proptest::prelude::*;

use crate::common::{events, fold, read_all, run_with, store};

fn append_bytes(path: &std::path::Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(bytes).expect("write");
}

#[test]
fn torn_last_line_is_cut_reported_and_appends_continue() {
    let (_tmp, store) = store();
    let written = run_with(&store, "r", &[2, 3]);
    let path = events(&store, "r");
    let good_len = std::fs::metadata(&path).expect("stat").len();
    let next = encode(
        &Record {
            seq: 6,
            ..written[0].clone()
        },
        false,
    )
    .expect("encode");
    append_bytes(&path, &next[..next.len() / 2]);

    // Readers ignore it and change nothing.
    let (state, info) = store.load_state("r").expect("read-only load");
    assert_eq!(state, fold(&written));
    assert_eq!(info.repair.as_ref().map(|r| &r.damage), Some(&Damage::Torn));
    assert!(std::fs::metadata(&path).expect("stat").len() > good_len);

    let mut run = store.open_run("r").expect("open");
    let (state, info) = run.load_state().expect("load");
    assert_eq!(state, fold(&written));
    let repair = info.repair.expect("repair reported");
    assert_eq!(
        (repair.dropped_bytes, repair.offset, repair.line),
        ((next.len() / 2) as u64, good_len, 6)
    );
    assert_eq!(repair.damage, Damage::Torn);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), good_len);
    let more = run
        .append(&batch(1, "after"), Timestamp::from_millis(9))
        .expect("append");
    assert_eq!(more[0].seq, 6);
    assert_eq!(read_all(&store, "r").len(), 6);
}

#[test]
fn bad_checksum_on_last_line_is_cut() {
    let (_tmp, store) = store();
    let written = run_with(&store, "r", &[2, 1]);
    let path = events(&store, "r");
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes.len() - 30;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    let mut run = store.open_run("r").expect("open");
    let (state, info) = run.load_state().expect("load");
    assert_eq!(state, fold(&written[..2]));
    assert_eq!(info.repair.expect("repair").damage, Damage::BadChecksum);
}

#[test]
fn unfinished_batch_is_cut_whole() {
    let (_tmp, store) = store();
    let written = run_with(&store, "r", &[2]);
    let path = events(&store, "r");
    // Two lines of a three-record batch reached the disk; its closing line did not.
    for seq in [3, 4] {
        append_bytes(
            &path,
            &encode(
                &Record {
                    seq,
                    ..written[0].clone()
                },
                true,
            )
            .expect("encode"),
        );
    }
    assert_eq!(
        read_all(&store, "r"),
        written,
        "readers do not see half a batch"
    );
    let mut run = store.open_run("r").expect("open");
    let (state, info) = run.load_state().expect("load");
    assert_eq!(state, fold(&written));
    assert_eq!(
        info.repair.expect("repair").damage,
        Damage::IncompleteBatch { records: 2 }
    );
    assert_eq!(
        run.append(&batch(1, "x"), Timestamp::from_millis(1))
            .expect("append")[0]
            .seq,
        3
    );
}

/// fjall's journal test: append garbage, reopen, ten times over; the records never change.
/// Issue 7 narrowed it: the garbage is one last line (what a crash can leave); garbage that
/// spans lines is refused (`corruption::damage_followed_by_more_lines_is_refused`).
#[test]
fn garbage_appended_then_reopened_ten_times() {
    let (_tmp, store) = store();
    let written = run_with(&store, "r", &[1, 3, 2]);
    let path = events(&store, "r");
    let good_len = std::fs::metadata(&path).expect("stat").len();
    for i in 0..10u8 {
        append_bytes(
            &path,
            &[b'{', b'"', i, 0xff, b'x', b'"', b'}', b'\n'][..(i as usize % 8) + 1],
        );
        let mut run = store.open_run("r").expect("open");
        let (state, info) = run.load_state().expect("load");
        assert_eq!(state, fold(&written), "round {i}");
        assert!(info.repair.is_some(), "round {i}");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), good_len);
        assert_eq!(read_all(&store, "r"), written);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Cut the file anywhere: reopening for write always leaves a clean prefix of whole batches.
    #[test]
    fn any_cut_leaves_a_clean_prefix_of_whole_batches(
        sizes in prop::collection::vec(1usize..5, 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("events.jsonl");
        let mut log = EventLog::create(&path).expect("create");
        let mut ends = vec![(0u64, 0usize)];
        let mut records = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            records.extend(log.append_batch(&batch(*n, "p"), Timestamp::from_millis(i as u64)).expect("append"));
            ends.push((log.end_offset(), records.len()));
        }
        drop(log);
        let bytes = std::fs::read(&path).expect("read");
        let cut = cut.index(bytes.len() + 1);
        std::fs::write(&path, &bytes[..cut]).expect("write");

        let mut got = Vec::new();
        let (log, repair) = EventLog::open(&path, ScanStart::BEGINNING, |r| got.push(r.clone())).expect("open");
        let (end, count) = ends.iter().rev().find(|(end, _)| *end as usize <= cut).copied().expect("0 fits");
        prop_assert_eq!(&got[..], &records[..count]);
        prop_assert_eq!(log.end_offset(), end);
        prop_assert_eq!(log.last_seq(), count as u64);
        prop_assert_eq!(std::fs::metadata(&path).expect("stat").len(), end);
        prop_assert_eq!(repair.is_some(), end as usize != cut);
    }
}

/// A reader racing a writer sees whole batches only and never mistakes a write in progress for
/// corruption.
#[test]
fn readers_during_appends_see_whole_batches_only() {
    let (_tmp, store) = store();
    let mut run = store
        .create_run(&dloop_store::conformance::meta("r"))
        .expect("create");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let (state, _) = store.load_state("r").expect("read-only load");
                assert_eq!(state.last_seq % 3, 0);
                let records: Vec<_> = store.records_from("r", 1).expect("reader").collect();
                assert!(records.iter().all(Result::is_ok));
                let n = records.len();
                assert_eq!(n % 3, 0);
                reads += 1;
            }
        })
    };
    for i in 0..300 {
        run.append(&batch(3, &"x".repeat(i)), Timestamp::from_millis(i as u64))
            .expect("append");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().expect("reader");
}
