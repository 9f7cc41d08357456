//! `whole_run`: a whole run through the runtime against the floor of its steps.
//!
//! - `dloop_200_steps`: `runs::start_run` of the `a -> b` loop, 200 steps of `shell: "true"`,
//!   ending paused at `max_steps` (creating the run folder, the final snapshot included).
//! - `floor_200_steps`: 200 times (spawn `bash -c true` and wait, then one 600-byte `write` +
//!   `fdatasync` on an `O_APPEND` file): what the steps cost with nothing of dloop around them.
//!
//! - `step_parts/*`: one action three ways (the runtime's `process::run_process` into the
//!   output stream, a plain
//!   `Command` with a process group and piped output, the bare spawn), to see where the time
//!   beyond the floor goes.
//!
//! - interleaved (printed to stderr, not criterion): dloop runs, floors and "piped floors"
//!   (the spawn with a process group and piped output, as capturing output requires)
//!   and 200 x (`process::run_process` + one fdatasync), alternated, with the median ratio per
//!   round: robust to a shared machine's changing load.
//!
//! Budget (DESIGN.md section 11): the run takes at most 1.05x the floor (dloop's overhead per
//! step under 0.1 ms). The ratio of the two medians is in `RESULTS.md`.
//!
//! Run: `cargo bench -p dloop-benches --bench whole_run` (about 50 s).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use dloop_benches::{loop_def, start_request, store_root, temp_dir};
use dloop_core::state::RunStatus;
use dloop_runtime::actions::output::StepOutput;
use dloop_runtime::driver::SessionOptions;
use dloop_runtime::observer::Silent;
use dloop_runtime::process::{self, Limits, ProcessSpec, StopFlag};
use dloop_runtime::runs::{StartRequest, start_run};
use dloop_store::FileStore;
use dloop_store::{OutputStream, Store};

/// Steps per run.
const STEPS: u64 = 200;

fn whole_run(c: &mut Criterion) {
    let dir = temp_dir();
    let store = FileStore::new(store_root(dir.path()));
    let def = loop_def();
    let request = start_request(&def, STEPS);

    let mut group = c.benchmark_group("whole_run");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("dloop_200_steps", |b| {
        b.iter(|| {
            let options = SessionOptions::new(dir.path().to_owned());
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

    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(dir.path().join("floor.jsonl"))
        .expect("open log");
    group.bench_function("floor_200_steps", |b| b.iter(|| floor(&mut file, false)));
    group.finish();
    step_parts(c, &store, dir.path());
    if filter_allows("interleaved") {
        interleaved(&store, &request, dir.path(), &mut file);
    }
}

/// Whether a name filter given on the command line (`cargo bench ... -- FILTER`) lets `name`
/// run: criterion filters its own benches, this applies the same rule to [`interleaved`].
fn filter_allows(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// [`STEPS`] times: spawn `bash -c true` (bare, or with `piped` output in its own process
/// group, as any runtime that captures output must) and wait, then 600 bytes + `fdatasync`.
fn floor(file: &mut File, piped: bool) {
    let line = [b'x'; 600];
    for _ in 0..STEPS {
        let status = if piped {
            Command::new("bash")
                .args(["-c", "true"])
                .stdin(Stdio::null())
                .process_group(0)
                .output()
                .expect("spawn bash")
                .status
        } else {
            Command::new("bash")
                .args(["-c", "true"])
                .status()
                .expect("spawn bash")
        };
        assert!(status.success());
        file.write_all(&line).expect("write");
        file.sync_data().expect("fdatasync");
    }
}

/// Rounds of [`interleaved`].
const ROUNDS: usize = 7;

/// The machine is shared, so two criterion benches run one after the other can see different
/// loads. This alternates a dloop run, the floor and the piped floor [`ROUNDS`] times and prints
/// the medians and the median of the per-round ratios (to stderr).
fn interleaved(store: &FileStore, request: &StartRequest<'_>, dir: &Path, file: &mut File) {
    let mut dloop = Vec::new();
    let mut bare = Vec::new();
    let mut piped = Vec::new();
    let mut actions = Vec::new();
    let mut stream = output_stream(store, 1);
    let stop = StopFlag::default();
    let spec = action_spec(dir);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..STEPS {
            assert_eq!(run_action(&spec, &stop, &mut *stream), Some(0));
            file.write_all(&[b'x'; 600]).expect("write");
            file.sync_data().expect("fdatasync");
        }
        actions.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        let options = SessionOptions::new(dir.to_owned());
        start_run(
            store,
            &|id: &str| store.local_run_dir(id),
            request,
            options,
            &mut Silent,
        )
        .expect("run");
        dloop.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        floor(file, false);
        bare.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        floor(file, true);
        piped.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let ratio = |floor: &[f64]| {
        median(
            dloop
                .iter()
                .zip(floor)
                .map(|(d, f)| d / f)
                .collect::<Vec<_>>(),
        )
    };
    eprintln!(
        "interleaved ({ROUNDS} rounds, {STEPS} steps): dloop {:.1} ms, floor {:.1} ms, \
         piped floor {:.1} ms, run_process + fdatasync {:.1} ms; \
         ratio to floor {:.3}, to piped floor {:.3}",
        median(dloop.clone()),
        median(bare.clone()),
        median(piped.clone()),
        median(actions.clone()),
        ratio(&bare),
        ratio(&piped),
    );
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The runtime's spec for a `bash -c true` action.
fn action_spec(dir: &Path) -> ProcessSpec {
    ProcessSpec {
        argv: vec!["bash".into(), "-c".into(), "true".into()],
        env: vec![("DLOOP_STATE".into(), "a".into())],
        cwd: dir.to_owned(),
        stdin: None,
        idempotency_key: "bench-key".into(),
        limits: Limits {
            kill_grace: Duration::from_secs(5),
            ..Limits::default()
        },
    }
}

/// Runs `spec` as the shell runner does, its output into `stream`; returns the exit code.
/// The output stream of a fresh run `n` of `store` (its handle is leaked: the bench holds the
/// stream to the end).
fn output_stream(store: &FileStore, n: u16) -> Box<dyn OutputStream> {
    let id = dloop_benches::run_id(dloop_benches::BASE_TS_MS, n);
    let run = Box::leak(
        store
            .create_run(&dloop_benches::run_meta(&id))
            .expect("run"),
    );
    run.open_output().expect("output stream")
}

fn run_action(spec: &ProcessSpec, stop: &StopFlag, stream: &mut dyn OutputStream) -> Option<i32> {
    let mut output = StepOutput::new(stream);
    let end =
        process::run_process(spec, stop, &mut |s, bytes| output.write(s, bytes)).expect("runs");
    output.finish(end.duration).expect("output");
    end.exit_code()
}

/// One action, three ways, to see where a step's time goes beyond the floor: the runtime's
/// `process::run_process` (process group, both pipes polled with a pidfd, output stream,
/// SHA-256, the leftover sweep), a plain `Command` with a process group and piped output, and
/// the bare spawn of the floor.
fn step_parts(c: &mut Criterion, store: &FileStore, dir: &Path) {
    let mut stream = output_stream(store, 2);
    let stop = StopFlag::default();
    let spec = action_spec(dir);
    let mut group = c.benchmark_group("step_parts");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("runtime_run_process_bash_true", |b| {
        b.iter(|| assert_eq!(run_action(&spec, &stop, &mut *stream), Some(0)))
    });
    group.bench_function("spawn_pgroup_piped_bash_true", |b| {
        b.iter(|| {
            let out = Command::new("bash")
                .args(["-c", "true"])
                .stdin(Stdio::null())
                .process_group(0)
                .output()
                .expect("spawn bash");
            assert!(out.status.success());
        })
    });
    group.bench_function("spawn_bash_true", |b| {
        b.iter(|| {
            let status = Command::new("bash")
                .args(["-c", "true"])
                .status()
                .expect("spawn bash");
            assert!(status.success());
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
