//! Measurements (ignored by default): `cargo test -p dloop-store --release --test main --
//! --ignored --nocapture measure`.

use std::time::Instant;

use dloop_core::{Record, Timestamp};
use dloop_store::EventLog;
use dloop_store::conformance::batch;
use dloop_store::record::{decode_line, encode_into};

/// Average time of `append_batch` of 5 events, fdatasync included, over 1000 calls; and the
/// cost of encoding and decoding alone. The folder is `DLOOP_MEASURE_DIR` (default: the target
/// folder, i.e. the project's disk, not a tmpfs).
#[test]
#[ignore = "measurement"]
fn measure_append_batch_of_5() {
    let base = std::env::var_os("DLOOP_MEASURE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    std::fs::create_dir_all(&base).expect("base");
    let tmp = tempfile::tempdir_in(&base).expect("tempdir");
    let mut log = EventLog::create(&tmp.path().join("events.jsonl")).expect("create");
    let events = batch(5, "measure");
    for i in 0..20 {
        log.append_batch(&events, Timestamp::from_millis(i))
            .expect("warm up");
    }
    let n = 1000;
    let start = Instant::now();
    for i in 0..n {
        log.append_batch(&events, Timestamp::from_millis(i))
            .expect("append");
    }
    let per = start.elapsed() / n as u32;
    println!(
        "append_batch(5 events) incl. fdatasync: {per:?} per call (avg of {n}) in {}",
        base.display()
    );

    let records: Vec<Record> = events
        .iter()
        .enumerate()
        .map(|(i, e)| Record {
            seq: i as u64 + 1,
            ts: Timestamp::from_millis(1),
            event: e.clone(),
        })
        .collect();
    let mut buf = Vec::new();
    let start = Instant::now();
    for _ in 0..n {
        buf.clear();
        for (i, r) in records.iter().enumerate() {
            encode_into(r, i + 1 < records.len(), &mut buf).expect("encode");
        }
    }
    println!(
        "encoding 5 records: {:?} per batch",
        start.elapsed() / n as u32
    );
    let lines: Vec<&[u8]> = buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let start = Instant::now();
    for _ in 0..n {
        for line in &lines {
            decode_line(line).expect("decode");
        }
    }
    println!(
        "decoding one record: {:?}",
        start.elapsed() / (n as u32 * lines.len() as u32)
    );
}
