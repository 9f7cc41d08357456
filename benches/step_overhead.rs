//! `step_overhead`: dloop's own work per step, without the action and without the sync.
//!
//! One step of the two-state shell loop (`a -> b -> a ...`) as the runtime does it: the
//! `transition::next` decisions, rendering the shell command, the evaluator, building the
//! `action_finished` / `evaluated` / `transitioned` / `state_entered` / `action_started` events,
//! folding each record into `RunState`, then encoding the batch's lines (records cloned as
//! `EventLog::append_batch` does) with `dloop_store::record::encode_into` into a reused buffer.
//! Nothing is written. Also reported apart: `decide_and_fold` (no encoding), `encode_only`,
//! and `claim_check`: the one `stat` the file store adds to each append since issue 7 (the
//! writer checks its lock file is still the one it holds).
//!
//! Budget (DESIGN.md section 11): under 0.1 ms per step.
//!
//! Run: `cargo bench -p dloop-benches --bench step_overhead`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use dloop_benches::{Advance, BASE_TS_MS, Simulator, run_id, run_meta, store_root, temp_dir};
use dloop_core::{Record, Timestamp};
use dloop_store::record::encode_into;
use dloop_store::{FileStore, Store};

/// Encodes the simulator's batch like `EventLog::append_batch` step 1, then clears it.
fn encode_batch(sim: &mut Simulator, next_seq: &mut u64, buf: &mut Vec<u8>) {
    buf.clear();
    let len = sim.batch.len();
    for (i, event) in sim.batch.iter().enumerate() {
        let record = Record {
            seq: *next_seq + i as u64,
            ts: sim.ts,
            event: event.clone(),
        };
        encode_into(&record, i + 1 < len, buf).expect("encodes");
    }
    *next_seq += len as u64;
    sim.batch.clear();
}

fn fresh() -> (Simulator, u64, Vec<u8>) {
    let id = run_id(BASE_TS_MS, 1);
    let mut sim = Simulator::start(&id, u64::MAX, Timestamp::from_millis(BASE_TS_MS));
    let mut next_seq = 1;
    let mut buf = Vec::with_capacity(4096);
    // The first batch (run_started, entry, intent) is not a steady-state step.
    assert_eq!(sim.advance(), Advance::ActionDue);
    encode_batch(&mut sim, &mut next_seq, &mut buf);
    (sim, next_seq, buf)
}

fn step_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("step_overhead");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    let (mut sim, mut next_seq, mut buf) = fresh();
    group.bench_function("full_step", |b| {
        b.iter(|| {
            // The runtime reads the clock once per batch.
            sim.ts = dloop_runtime::driver::now();
            assert_eq!(sim.advance(), Advance::ActionDue);
            encode_batch(&mut sim, &mut next_seq, &mut buf);
            black_box(buf.len())
        })
    });

    let (mut sim, _, _) = fresh();
    group.bench_function("decide_and_fold", |b| {
        b.iter(|| {
            assert_eq!(sim.advance(), Advance::ActionDue);
            let n = sim.batch.len();
            sim.batch.clear();
            black_box(n)
        })
    });

    let (mut sim, _, mut buf) = fresh();
    assert_eq!(sim.advance(), Advance::ActionDue);
    let step_batch = sim.batch.clone();
    let mut seq = 4;
    group.bench_function("encode_only", |b| {
        b.iter(|| {
            sim.batch.clone_from(&step_batch);
            encode_batch(&mut sim, &mut seq, &mut buf);
            black_box(buf.len())
        })
    });
    let dir = temp_dir();
    let store = FileStore::new(store_root(dir.path()));
    let run = store
        .create_run(&run_meta(&run_id(BASE_TS_MS, 7)))
        .expect("create run");
    group.bench_function("claim_check", |b| {
        b.iter(|| run.check_claim().expect("holds its claim"))
    });
    group.finish();
}

// A plain `main` rather than `criterion_group!`, whose generated `pub fn` has no docs.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    step_overhead(&mut c);
    c.final_summary();
}
