//! `whole_run`: a whole run through the runtime against the floor of its steps.
//!
//! - `dloop_200_steps`: `runs::start_run` of the `a -> b` loop, 200 steps of `shell: "true"`,
//!   ending paused at `max_steps` (creating the run folder, the final snapshot included).
//! - `floor_200_steps`: 200 times (spawn `bash -c true` and wait, then one 600-byte `write` +
//!   `fdatasync` on an `O_APPEND` file): what the steps cost with nothing of dloop around them.
//!
//! Budget (DESIGN.md section 11): the run takes at most 1.05x the floor (dloop's overhead per
//! step under 0.1 ms). The ratio of the two medians is in `RESULTS.md`.
//!
//! Run: `cargo bench -p dloop-benches --bench whole_run` (about 25 s).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, SamplingMode};
use dloop_benches::{LOOP_NAME, LOOP_YAML, loop_def, store_root, temp_dir};
use dloop_core::state::RunStatus;
use dloop_runtime::driver::SessionOptions;
use dloop_runtime::observer::Silent;
use dloop_runtime::runs::{StartRequest, start_run};
use dloop_store::FileStore;

/// Steps per run.
const STEPS: u64 = 200;

fn whole_run(c: &mut Criterion) {
    let dir = temp_dir();
    let store = FileStore::new(store_root(dir.path()));
    let def = loop_def();
    let request = StartRequest {
        def: &def,
        definition_text: LOOP_YAML,
        loop_name: LOOP_NAME,
        context: Default::default(),
        argv: vec!["dloop".into(), "run".into(), LOOP_NAME.into()],
        max_steps: STEPS,
        timeout_ms: None,
        delay_ms: None,
    };

    let mut group = c.benchmark_group("whole_run");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("dloop_200_steps", |b| {
        b.iter(|| {
            let options = SessionOptions::new(dir.path().to_owned());
            let end = start_run(&store, &request, options, &mut Silent).expect("run");
            assert_eq!(end.status, RunStatus::Paused);
            assert_eq!(end.state.step, STEPS);
        })
    });

    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(dir.path().join("floor.jsonl"))
        .expect("open log");
    let line = [b'x'; 600];
    group.bench_function("floor_200_steps", |b| {
        b.iter(|| {
            for _ in 0..STEPS {
                let status = Command::new("bash")
                    .args(["-c", "true"])
                    .status()
                    .expect("spawn bash");
                assert!(status.success());
                file.write_all(&line).expect("write");
                file.sync_data().expect("fdatasync");
            }
        })
    });
    group.finish();
}

// A plain `main` rather than `criterion_group!`, whose generated `pub fn` has no docs.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    whole_run(&mut c);
    c.final_summary();
}
