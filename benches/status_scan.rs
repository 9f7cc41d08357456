//! `status_scan`: what `dloop status` does over many runs.
//!
//! Setup creates, once per size, 1,000 and then 10,000 run folders through the file store, each
//! a small completed run (about 20 records and a snapshot, written by the real step loop). Each
//! iteration lists the runs (`list_runs`: every run's state read-only, snapshot plus the log
//! after it, no lock; liveness probed only for unfinished runs).
//!
//! Budget (DESIGN.md section 11): `status` over 1,000 run folders under 100 ms.
//!
//! Run: `cargo bench -p dloop-benches --bench status_scan` (setup takes about half a minute:
//! each run costs the fsyncs of its creation).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use dloop_benches::{BASE_TS_MS, build_completed_run, run_id, store_root, temp_dir};
use dloop_core::state::RunStatus;
use dloop_store::{FileStore, Store};

/// The project sizes scanned: run folders.
const SIZES: [u16; 2] = [1_000, 10_000];

fn status_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("status_scan");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for runs in SIZES {
        let dir = temp_dir();
        let store = FileStore::new(store_root(dir.path()));
        let started = Instant::now();
        for i in 0..runs {
            // A run a second apart, like a busy project's history.
            build_completed_run(&store, &run_id(BASE_TS_MS + u64::from(i) * 1000, i));
        }
        eprintln!("setup: {runs} runs built in {:.1?}", started.elapsed());
        group.bench_function(format!("{runs}_runs"), |b| {
            b.iter(|| {
                // What `dloop status` does: every run's summary (state, liveness of unfinished
                // ones).
                let list = store.list_runs().expect("list");
                assert_eq!(list.runs.len(), usize::from(runs));
                let completed = list
                    .runs
                    .iter()
                    .filter(|run| run.state.status == RunStatus::Completed && !run.live)
                    .count();
                assert_eq!(completed, usize::from(runs));
                black_box(completed)
            })
        });
        group.bench_function(format!("{runs}_runs_list_only"), |b| {
            b.iter(|| black_box(store.run_ids().expect("ids").len()))
        });
    }
    group.finish();
}

// A plain `main` rather than `criterion_group!`, whose generated `pub fn` has no docs.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    status_scan(&mut c);
    c.final_summary();
}
