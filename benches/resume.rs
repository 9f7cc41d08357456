//! `resume`: loading a run's state for resume, against the length of its log.
//!
//! Setup builds, once, runs whose logs hold 10k, 100k and 1M records of the `a -> b` loop,
//! written by the real step loop (a runner that spawns nothing), with a snapshot 500 records
//! before the end (as a live run that snapshots every 1,000 records leaves it), plus 10k and
//! 100k logs without a snapshot. Each iteration is `open_run` (takes the run lock) and
//! `load_state()` (snapshot, check of the resume point, verify and fold the tail),
//! then drops the handle (releasing the lock).
//!
//! Budget (DESIGN.md section 11): resume of a 1,000,000-event log under 50 ms; its cost must
//! not grow with the log before the snapshot (compare 10k/100k/1M with a snapshot, and the
//! full replays without one).
//!
//! Also measured for the 1M log, to see where the time goes: `open_run` alone (lock), reading
//! the snapshot, and the read-only `Store::load_state` (no lock, no writer handle).
//!
//! Run: `cargo bench -p dloop-benches --bench resume` (setup writes about 200 MB, on a memory
//! file system when there is one: 200,000 steps of one `fdatasync` each would take minutes on
//! a disk; `DLOOP_BENCH_DIR` chooses another folder).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use dloop_benches::{BASE_TS_MS, build_run, memory_dir, run_id, store_root};
use dloop_store::{FileStore, RunHandle, Store};

/// Records between the snapshot and the end of the log.
const TAIL: u64 = 500;

fn resume(c: &mut Criterion) {
    let dir = match std::env::var_os("DLOOP_BENCH_DIR") {
        Some(_) => dloop_benches::temp_dir(),
        None => memory_dir(),
    };
    let store = FileStore::new(store_root(dir.path()));
    let cases: [(&str, u64, bool); 5] = [
        ("snapshot", 10_000, true),
        ("snapshot", 100_000, true),
        ("snapshot", 1_000_000, true),
        ("full_replay", 10_000, false),
        ("full_replay", 100_000, false),
    ];
    let mut built = Vec::new();
    for (i, (kind, records, snapshot)) in cases.into_iter().enumerate() {
        let started = Instant::now();
        let run = build_run(
            &store,
            &run_id(BASE_TS_MS, i as u16),
            records,
            snapshot,
            TAIL,
        );
        eprintln!(
            "setup: {kind}/{records}: {} records, snapshot at {:?}, built in {:.1?}",
            run.records,
            run.snapshot_seq,
            started.elapsed()
        );
        built.push((kind, records, run));
    }

    let mut group = c.benchmark_group("resume");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (kind, records, run) in &built {
        // Check once that the case measures what it says.
        {
            let mut handle = store.open_run(&run.id).expect("open");
            let (state, info) = handle.load_state().expect("load");
            assert_eq!(state.last_seq, run.records);
            assert_eq!(info.snapshot_seq, run.snapshot_seq);
            assert!(info.snapshot_ignored.is_none(), "{info:?}");
            eprintln!(
                "check: {kind}/{records}: replayed {} records",
                info.replayed
            );
        }
        group.bench_with_input(BenchmarkId::new(*kind, records), run, |b, run| {
            b.iter(|| {
                let mut handle = store.open_run(&run.id).expect("open");
                let (state, _info) = handle.load_state().expect("load");
                assert_eq!(state.last_seq, run.records);
                drop(handle);
            })
        });
    }
    // Where the time of the largest case goes, step by step.
    let (_, _, big) = &built[2];
    group.bench_function("1000000_parts/open_run_and_drop", |b| {
        b.iter(|| drop(store.open_run(&big.id).expect("open")))
    });
    group.bench_function("1000000_parts/load_state_read_only", |b| {
        b.iter(|| {
            let (state, _) = store.load_state(&big.id).expect("load");
            assert_eq!(state.last_seq, big.records);
        })
    });
    group.finish();
}

// A plain `main` rather than `criterion_group!`, whose generated `pub fn` has no docs.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    resume(&mut c);
    c.final_summary();
}
