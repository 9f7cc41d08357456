//! Damage followed by valid records is refused with the line named; snapshots that do not match
//! the log are ignored.

use dloop_core::Record;
use dloop_store::record::encode;
use dloop_store::{Damage, RunHandle, Store, StoreError};

use crate::common::{events, fold, run_with, store};

/// Byte offset of the start of 1-based line `n`.
pub fn line_start(bytes: &[u8], n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 2)
        .map(|(i, _)| i + 1)
        .expect("line")
}

#[test]
fn bad_line_in_the_middle_is_refused_naming_it() {
    let (_tmp, store) = store();
    run_with(&store, "r", &[2, 2, 2]);
    let path = events(&store, "r");
    let mut bytes = std::fs::read(&path).expect("read");
    let offset = line_start(&bytes, 3);
    bytes[offset + 10] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");

    let mut run = store.open_run("r").expect("open");
    let err = run.load_state().expect_err("refuses");
    match &err {
        StoreError::Corrupt {
            line,
            offset: at,
            damage,
            ..
        } => {
            assert_eq!(
                (*line, *at, damage),
                (3, offset as u64, &Damage::BadChecksum)
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("events.jsonl line 3 is damaged (bad checksum)"),
        "{message}"
    );
    assert!(message.contains("refusing to guess"), "{message}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        bytes,
        "nothing modified"
    );
    assert!(matches!(
        store.load_state("r"),
        Err(StoreError::Corrupt { line: 3, .. })
    ));
    let results: Vec<_> = store.records_from("r", 1).expect("reader").collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
    assert!(matches!(
        results.last(),
        Some(Err(StoreError::Corrupt { .. }))
    ));
}

#[test]
fn seq_gap_is_refused() {
    let (_tmp, store) = store();
    let written = run_with(&store, "r", &[3]);
    let path = events(&store, "r");
    let mut bytes = Vec::new();
    for seq in [1, 2, 4] {
        bytes.extend(
            encode(
                &Record {
                    seq,
                    ..written[0].clone()
                },
                false,
            )
            .expect("encode"),
        );
    }
    std::fs::write(&path, &bytes).expect("write");
    let mut run = store.open_run("r").expect("open");
    let err = run.load_state().expect_err("refuses");
    assert!(
        matches!(
            err,
            StoreError::SeqGap {
                line: 3,
                expected: 3,
                found: 4,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Issue 7, F4: a log cut at a batch boundary below the snapshot lost records that were
/// durable; rebuilding from it would run the last step's action again. Refused, untouched.
#[test]
fn log_cut_below_the_snapshot_is_refused() {
    let (_tmp, store) = store();
    let written = run_with(&store, "r", &[2, 3]);
    {
        let mut run = store.open_run("r").expect("open");
        let (state, _) = run.load_state().expect("load");
        run.save_snapshot(&state).expect("snapshot at seq 5");
    }
    // The log loses its last batch (restored from an older copy, say).
    let path = events(&store, "r");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..line_start(&bytes, 3)]).expect("write");

    let cut_len = std::fs::metadata(&path).expect("stat").len();
    assert!(matches!(
        store.load_state("r"),
        Err(StoreError::LogBehindSnapshot { .. })
    ));
    let mut run = store.open_run("r").expect("open");
    let err = run.load_state().expect_err("refused");
    assert!(
        matches!(err, StoreError::LogBehindSnapshot { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("events.jsonl"), "{err}");
    assert!(err.to_string().contains("state.json"), "{err}");
    drop(run);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), cut_len);
    assert_eq!(written.len(), 5);
}

#[test]
fn unreadable_or_misplaced_snapshot_falls_back_to_full_replay() {
    let (_tmp, store) = store();
    let written = run_with(&store, "r", &[2, 3]);
    let snap = store.local_run_dir("r").expect("dir").join("state.json");
    let fake = dloop_core::RunState {
        step: 99,
        ..dloop_core::RunState::default()
    };
    for text in [
        "{not json".to_owned(),
        serde_json::json!({"seq": 2, "log_offset": 7, "state": fake}).to_string(),
        serde_json::json!({"seq": 1, "log_offset": 0, "state": fake}).to_string(),
    ] {
        std::fs::write(&snap, &text).expect("write");
        let (state, info) = store.load_state("r").expect("load");
        assert_eq!(state, fold(&written), "{text}");
        assert!(info.snapshot_ignored.is_some(), "{text}");
    }
}
