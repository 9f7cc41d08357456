//! `step_overhead`: dloop's own work per step, measured on the real `Session`.
//!
//! `start_run` of the two-state shell loop (`a -> b -> a ...`) for 1,000 steps, with a runner
//! that spawns nothing ([`TrivialRunner`]) and the run folder on a memory file system, so the
//! time per step is everything dloop itself does: `transition::next` decisions, rendering the
//! shell command, the evaluator, building and folding the records, encoding the batch, the
//! `write` and the (nearly free) `fdatasync`, the output stream, the snapshot every 1,000
//! records. Two variants: actions that print nothing, and actions that print one 100-byte line
//! (which then goes through the output stream and the excerpt).
//!
//! Budget (DESIGN.md section 11): under 0.1 ms per step.
//!
//! Run: `cargo bench -p dloop-benches --bench step_overhead`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use dloop_benches::{TrivialRunner, loop_def, memory_dir, start_request, store_root};
use dloop_core::state::RunStatus;
use dloop_runtime::driver::SessionOptions;
use dloop_runtime::observer::Silent;
use dloop_runtime::runs::start_run;
use dloop_store::FileStore;

/// Steps per measured run.
const STEPS: u64 = 1000;

fn step_overhead(c: &mut Criterion) {
    let dir = memory_dir();
    let store = FileStore::new(store_root(dir.path()));
    let def = loop_def();
    let request = start_request(&def, STEPS);
    let mut group = c.benchmark_group("step_overhead");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(STEPS));
    for (name, output) in [
        ("session_step_silent", Vec::new()),
        (
            "session_step_100_byte_output",
            [b'x'; 99].iter().chain(b"\n").copied().collect(),
        ),
    ] {
        let runner = Arc::new(TrivialRunner {
            output,
            fail_at_step: None,
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut options = SessionOptions::new(dir.path().to_owned());
                options.shell = runner.clone();
                let end = start_run(
                    &store,
                    &|id: &str| store.local_run_dir(id),
                    &request,
                    options,
                    &mut Silent,
                )
                .expect("run");
                assert_eq!(end.status, RunStatus::Paused);
                assert_eq!(end.state.step, STEPS);
            })
        });
    }
    group.finish();
}

// A plain `main` rather than `criterion_group!`, whose generated `pub fn` has no docs.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    step_overhead(&mut c);
    c.final_summary();
}
