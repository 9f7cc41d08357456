//! Shared helpers for the criterion benchmarks in this folder: the loop they run, a runner that
//! spawns nothing ([`TrivialRunner`]) so the real step loop (`Session`) can be measured without
//! process spawns, and builders of run folders with long logs, written by that real step loop.
//!
//! Every bench measures one budget of DESIGN.md section 11; `RESULTS.md` holds the numbers.
//! Run them all with `cargo bench -p dloop-benches`, or one with `--bench NAME`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dloop_core::event::Event;
use dloop_core::model::LoopDef;
use dloop_core::run_id::RunId;
use dloop_core::state::RunStatus;
use dloop_core::{RunState, Timestamp};
use dloop_runtime::driver::{Session, SessionOptions};
use dloop_store::{FileStore, RunMeta, Store};

/// The loop every bench runs: two shell states that call `true` and hand over to each other
/// (`a -> b -> a ...`), and a terminal state that a failing action routes to. Valid: `done` is
/// reachable, every verdict of `exit_code` is routed. The run pauses at `max_steps`.
pub const LOOP_YAML: &str = "\
name: bench
description: Two trivial shell states taking turns.
initial: a
limits:
  max_steps: 200
states:
  a:
    shell: \"true\"
    on: { success: b, _: done }
  b:
    shell: \"true\"
    on: { success: a, _: done }
  done:
    terminal: success
";

/// The loop's name (run ids start with it).
pub const LOOP_NAME: &str = "bench";

/// [`LOOP_YAML`], parsed.
///
/// # Panics
/// If the constant stops parsing (a bench setup bug).
pub fn loop_def() -> LoopDef {
    dloop_core::parse::parse_loop(LOOP_YAML.as_bytes())
        .expect("LOOP_YAML parses")
        .def
}

/// What `dloop run bench --max-steps MAX_STEPS` asks of the runtime.
pub fn start_request(def: &LoopDef, max_steps: u64) -> dloop_runtime::runs::StartRequest<'_> {
    dloop_runtime::runs::StartRequest {
        def,
        definition_text: LOOP_YAML,
        loop_name: LOOP_NAME,
        loop_path: None,
        context: BTreeMap::new(),
        argv: vec!["dloop".into(), "run".into(), LOOP_NAME.into()],
        max_steps,
        timeout_ms: None,
        delay_ms: None,
        scope: None,
        options: Default::default(),
    }
}

/// A run id for `bench` at `ts_ms`, made unique by `suffix`.
///
/// # Panics
/// If the timestamp is out of the run id's range.
pub fn run_id(ts_ms: u64, suffix: u16) -> String {
    RunId::new(LOOP_NAME, Timestamp::from_millis(ts_ms), suffix)
        .expect("valid run id")
        .as_str()
        .to_owned()
}

/// The metadata of a `bench` run with id `id`.
pub fn run_meta(id: &str) -> RunMeta {
    RunMeta {
        id: id.to_owned(),
        loop_name: LOOP_NAME.to_owned(),
        definition: LOOP_YAML.to_owned(),
        definition_sha256: RunMeta::sha256_hex(LOOP_YAML),
        context: BTreeMap::new(),
        argv: vec!["dloop".into(), "run".into(), LOOP_NAME.into()],
        created_at: Timestamp::from_millis(BASE_TS_MS),
        project_root: "/tmp/project".into(),
        loop_path: None,
        started: None,
        worktree: None,
    }
}

/// A fixed clock for built logs: 2026-11-21T10:00:00Z.
pub const BASE_TS_MS: u64 = 1_795_255_200_000;
/// What [`build_run`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltRun {
    /// The run id.
    pub id: String,
    /// Records in the log.
    pub records: u64,
    /// The seq the snapshot reflects, if one was saved.
    pub snapshot_seq: Option<u64>,
}

/// Creates run `id` in `store` with about `records` records of the `a -> b` loop, written by
/// the real step loop (`Session` with a [`TrivialRunner`] and a clock that stands still, so
/// every record has the same timestamp). With `snapshot`, the run's snapshot reflects the log
/// `tail` records before its end (as a live run that snapshots every 1,000 records leaves it);
/// without, there is none and a resume replays the whole log.
///
/// Each step is one `write` + `fdatasync`: build big logs on a memory file system
/// ([`memory_dir`]) unless the disk is the point.
///
/// # Panics
/// On any store error (a bench setup failure).
pub fn build_run(store: &FileStore, id: &str, records: u64, snapshot: bool, tail: u64) -> BuiltRun {
    // A step writes 5 records: result, verdict, transition, entry, intent.
    let head_steps = records.saturating_sub(tail) / 5;
    let state = drive_new(store, id, head_steps, &TrivialRunner::default());
    let local = store.local_run_dir(id).expect("run dir");
    let snapshot_file = local.join("state.json");
    let head_snapshot = std::fs::read(&snapshot_file).expect("snapshot after the head");
    let mut last_seq = state.last_seq;
    if tail >= 5 {
        let input = dloop_runtime::runs::ResumeInput {
            run_id: id.to_owned(),
            request: dloop_core::transition::ResumeRequest {
                // An absolute budget: the head's steps plus the tail's.
                max_steps: Some(head_steps + tail / 5),
                ..Default::default()
            },
            ..Default::default()
        };
        let end = dloop_runtime::runs::resume_run(
            store,
            &|id: &str| store.local_run_dir(id),
            &input,
            session_options(&local, &TrivialRunner::default()),
            &mut dloop_runtime::observer::Silent,
        )
        .expect("resume the tail");
        last_seq = end.state.last_seq;
    }
    // The tail's session saved a snapshot at its end; put back the one from before it (still
    // valid: the log only grew), or none at all.
    if snapshot {
        std::fs::write(&snapshot_file, head_snapshot).expect("restore snapshot");
    } else {
        std::fs::remove_file(&snapshot_file).expect("remove snapshot");
    }
    BuiltRun {
        id: id.to_owned(),
        records: last_seq,
        snapshot_seq: snapshot.then_some(state.last_seq),
    }
}

/// Creates a small completed run `id` (four steps, the fourth fails and routes to `done`;
/// about 20 records) with the real step loop; the kind of run folder `dloop status` walks past.
///
/// # Panics
/// On any store error.
pub fn build_completed_run(store: &FileStore, id: &str) {
    let runner = TrivialRunner {
        fail_at_step: Some(4),
        ..TrivialRunner::default()
    };
    let state = drive_new(store, id, 200, &runner);
    assert_eq!(state.status, RunStatus::Completed, "the run completes");
}

/// Session options for fixture runs: a runner that spawns nothing, a clock that stands still,
/// no snapshot but the one at the end.
fn session_options(project_root: &Path, runner: &TrivialRunner) -> SessionOptions {
    let mut options = SessionOptions::new(project_root.to_owned());
    options.shell = std::sync::Arc::new(runner.clone());
    options.clock = std::sync::Arc::new(dloop_runtime::clock::ManualClock::new(
        Timestamp::from_millis(BASE_TS_MS),
    ));
    options.snapshot_every = u64::MAX;
    options
}

/// Creates run `id` and drives it with the real `Session` for up to `max_steps` steps.
fn drive_new(store: &FileStore, id: &str, max_steps: u64, runner: &TrivialRunner) -> RunState {
    let def = loop_def();
    let meta = run_meta(id);
    let run = store.create_run(&meta).expect("create run");
    let local = store.local_run_dir(id).expect("run dir");
    let mut observer = dloop_runtime::observer::Silent;
    let mut session = Session::new(
        &def,
        run,
        local.clone(),
        RunState::default(),
        session_options(&local, runner),
        &mut observer,
    );
    session.record(Event::RunStarted {
        run_id: id.to_owned(),
        loop_name: LOOP_NAME.to_owned(),
        definition_sha256: meta.definition_sha256.clone(),
        initial: def.initial.clone().unwrap_or_default(),
        context: BTreeMap::new(),
        max_steps,
        timeout_ms: None,
        delay_ms: None,
    });
    session.drive().expect("drive");
    session.into_state()
}

/// An action runner that spawns nothing: every action "exits 0" at once (1 at `fail_at_step`),
/// printing `output`. With it, a session's time per step is dloop's own work (decide, render,
/// fold, encode, write, sync) without the spawn.
#[derive(Debug, Clone, Default)]
pub struct TrivialRunner {
    /// What every action prints.
    pub output: Vec<u8>,
    /// The step whose action exits 1.
    pub fail_at_step: Option<u64>,
}

impl dloop_runtime::actions::ActionRunner for TrivialRunner {
    fn run(
        &self,
        request: &dloop_runtime::actions::ActionRequest<'_>,
        io: &mut dloop_runtime::actions::ActionIo<'_, '_>,
    ) -> std::io::Result<dloop_runtime::actions::ActionOutcome> {
        use std::os::unix::process::ExitStatusExt;
        if !self.output.is_empty() {
            io.chunk(dloop_runtime::actions::output::Stream::Stdout, &self.output)?;
        }
        Ok(dloop_runtime::process::ProcessEnd {
            // A wait status: the exit code sits in the second byte.
            status: Some(std::process::ExitStatus::from_raw(
                if self.fail_at_step == Some(request.pending.step) {
                    1 << 8
                } else {
                    0
                },
            )),
            spawn_error: None,
            timed_out: None,
            stopped: false,
            duration: std::time::Duration::ZERO,
        }
        .into())
    }
}

/// A folder on a memory file system (`/dev/shm`) when there is one, else [`temp_dir`]: there a
/// `fdatasync` costs next to nothing, so a run's time is dloop's own work.
///
/// # Panics
/// When the folder cannot be created.
pub fn memory_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("temp dir in /dev/shm")
    } else {
        temp_dir()
    }
}

/// A fresh temporary folder for a bench's runs, on the same disk as the build (so fsync costs
/// what it costs there). Honors `DLOOP_BENCH_DIR` when set.
///
/// # Panics
/// When the folder cannot be created.
pub fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("DLOOP_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("temp dir")
}

/// The runtime folder (`.loops/.dloop`) inside `root`.
pub fn store_root(root: &Path) -> PathBuf {
    root.join(".loops").join(".dloop")
}
