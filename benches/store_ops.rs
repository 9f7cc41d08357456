//! `store_ops`: the store's own costs, one operation at a time, on the disk the runs live on
//! (`DLOOP_BENCH_DIR` chooses it).
//!
//! - `append_batch/5_records`: one step's batch (result, verdict, transition, entry, intent):
//!   encode, one `write`, one `fdatasync`;
//! - `append_batch/1_record`: the same for a single record (what a record costs on its own);
//! - `snapshot_write`: `save_snapshot` of the state of a 1,000-step run (temp file, fsync,
//!   rename, fsync of the folder).
//!
//! No budget of its own: the per-step budget of DESIGN.md section 11 is what dloop adds beyond
//! one spawn and one `fdatasync`; these say where that `fdatasync` goes and what a snapshot
//! (one per 1,000 records) costs.
//!
//! Run: `cargo bench -p dloop-benches --bench store_ops`

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use dloop_benches::{BASE_TS_MS, build_run, run_id, run_meta, store_root, temp_dir};
use dloop_core::Timestamp;
use dloop_core::event::Event;
use dloop_store::{FileStore, Store};

fn store_ops(c: &mut Criterion) {
    let dir = temp_dir();
    let store = FileStore::new(store_root(dir.path()));
    let mut group = c.benchmark_group("store_ops");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));

    let mut run = store
        .create_run(&run_meta(&run_id(BASE_TS_MS, 1)))
        .expect("create");
    let event = Event::LogRepaired {
        dropped_bytes: 0,
        reason: "a record of about the size of a step's".repeat(3),
    };
    let batch5 = vec![event.clone(); 5];
    let batch1 = vec![event];
    group.bench_function("append_batch/5_records", |b| {
        b.iter(|| {
            black_box(run.append(&batch5, Timestamp::from_millis(BASE_TS_MS))).expect("append")
        })
    });
    group.bench_function("append_batch/1_record", |b| {
        b.iter(|| {
            black_box(run.append(&batch1, Timestamp::from_millis(BASE_TS_MS))).expect("append")
        })
    });
    drop(run);

    // A 1,000-step run's state (5,000 records), as the session snapshots it.
    let built = build_run(&store, &run_id(BASE_TS_MS, 2), 5_000, true, 0);
    let mut run = store.open_run(&built.id).expect("open");
    let (state, _) = run.load_state().expect("load");
    group.bench_function("snapshot_write", |b| {
        b.iter(|| run.save_snapshot(&state).expect("snapshot"))
    });
    group.finish();
}

// A plain `main` rather than `criterion_group!`, whose generated `pub fn` has no docs.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    store_ops(&mut c);
    c.final_summary();
}
