//! Shared helpers for the criterion benchmarks in this folder: the loop they run, an in-memory
//! [`Simulator`] that drives `transition::next` the way the runtime's step loop does (with fake
//! action results), and builders for run folders with long logs.
//!
//! Every bench measures one budget of DESIGN.md section 11; `RESULTS.md` holds the numbers.
//! Run them all with `cargo bench -p dloop-benches`, or one with `--bench NAME`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dloop_core::evaluate::{self, EvalInput};
use dloop_core::event::{ActionResult, Event};
use dloop_core::interpolate::Quoting;
use dloop_core::model::{ActionRef, LoopDef};
use dloop_core::run_id::RunId;
use dloop_core::state::{PendingAction, Phase, RunStatus, StepResult};
use dloop_core::transition::{self, Decision};
use dloop_core::{Record, RunState, Timestamp};
use dloop_runtime::interp::Lookup;
use dloop_store::{FileStore, RunHandle, RunMeta, Store};

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

/// SHA-256 (hex) of an empty output: what a `true` action records.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// [`LOOP_YAML`], parsed.
///
/// # Panics
/// If the constant stops parsing (a bench setup bug).
pub fn loop_def() -> LoopDef {
    dloop_core::parse::parse_loop(LOOP_YAML.as_bytes())
        .expect("LOOP_YAML parses")
        .def
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
    }
}

/// A fixed clock for built logs: 2026-11-21T10:00:00Z.
pub const BASE_TS_MS: u64 = 1_795_255_200_000;

/// Why [`Simulator::advance`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// An `action_started` intent was recorded: the runtime would write and fdatasync the
    /// batch now, then spawn the action.
    ActionDue,
    /// The run stopped in this status.
    Stopped(RunStatus),
}

/// Drives [`transition::next`] like the runtime's `Session::drive`, in memory: every decision
/// becomes a record folded into [`Simulator::state`] and pushed onto [`Simulator::batch`];
/// actions "run" instantly and exit 0 (or 1 at [`Simulator::fail_at_step`]). The work done per
/// step is the runtime's own work minus the spawn, the output file and the sync: decisions,
/// rendering the shell command, the evaluator, building events, the fold.
pub struct Simulator {
    /// The loop.
    pub def: LoopDef,
    /// The fold of every record made so far.
    pub state: RunState,
    /// Events recorded since the caller last took them.
    pub batch: Vec<Event>,
    /// The step whose action exits 1 (routing to `done`), if any.
    pub fail_at_step: Option<u64>,
    /// The timestamp every record gets (the runtime gives a batch one timestamp).
    pub ts: Timestamp,
    run_dir: PathBuf,
}

impl Simulator {
    /// A run of [`loop_def`] with id `run_id`, whose `run_started` (with `max_steps`) is
    /// already recorded.
    pub fn start(run_id: &str, max_steps: u64, ts: Timestamp) -> Self {
        let def = loop_def();
        let mut sim = Self {
            state: RunState::default(),
            batch: Vec::new(),
            fail_at_step: None,
            ts,
            run_dir: PathBuf::from("/tmp/dloop-bench-run"),
            def,
        };
        let initial = sim.def.initial.clone().unwrap_or_default();
        sim.record(Event::RunStarted {
            run_id: run_id.to_owned(),
            loop_name: LOOP_NAME.to_owned(),
            definition_sha256: RunMeta::sha256_hex(LOOP_YAML),
            initial,
            context: BTreeMap::new(),
            max_steps,
            timeout_ms: None,
            delay_ms: None,
        });
        sim
    }

    /// Folds `event` into the state and adds it to the batch (the runtime's `Session::record`).
    pub fn record(&mut self, event: Event) {
        let record = Record {
            seq: self.state.last_seq + 1,
            ts: self.ts,
            event,
        };
        self.state.apply(&record);
        self.batch.push(record.event);
    }

    /// Runs decisions until the next action is due (its intent recorded) or the run stops.
    pub fn advance(&mut self) -> Advance {
        loop {
            match transition::next(&self.def, &self.state, self.ts) {
                Decision::Record(event) => self.record(event),
                Decision::StartAction { intent, .. } => {
                    self.record(intent);
                    return Advance::ActionDue;
                }
                Decision::RunAction(pending) => {
                    let event = self.finish_action(&pending);
                    self.record(event);
                }
                Decision::Evaluate => {
                    let event = self.evaluate();
                    self.record(event);
                }
                Decision::Stop(status) => return Advance::Stopped(status),
            }
        }
    }

    /// What the runtime does around an action, minus spawning it: render the command, build
    /// the environment, make the `action_finished` event.
    fn finish_action(&self, pending: &PendingAction) -> Event {
        let state_def = &self.def.states[&pending.state];
        let lookup = Lookup {
            state: &self.state,
            run_dir: &self.run_dir,
            capture_limit: 1 << 20,
            outputs: None,
        };
        if let Some(ActionRef::Shell(command)) = state_def.action() {
            let rendered = lookup.render(command, Quoting::Shell).expect("renders");
            let env = [
                self.state.run_id.clone(),
                pending.state.clone(),
                pending.step.to_string(),
                pending.idempotency_key.clone(),
                rendered,
            ];
            std::hint::black_box(env);
        }
        let exit_code = if self.fail_at_step == Some(pending.step) {
            1
        } else {
            0
        };
        Event::ActionFinished {
            state: pending.state.clone(),
            step: pending.step,
            capture: state_def.capture.clone(),
            result: ActionResult {
                exit_code: Some(exit_code),
                duration_ms: 2,
                bytes: 0,
                sha256: EMPTY_SHA256.to_owned(),
                excerpt: String::new(),
                complete: true,
                output_path: pending.output_path.clone(),
                ..ActionResult::default()
            },
        }
    }

    /// The runtime's `Session::evaluate` for an action's result.
    fn evaluate(&self) -> Event {
        let current = self.state.current.clone().unwrap_or_default();
        let step = self.state.step;
        let evaluator = self.def.states[&current].evaluator();
        let result = match &self.state.phase {
            Phase::Finished { result } => Some(result.clone()),
            _ => None,
        };
        let lookup = Lookup {
            state: &self.state,
            run_dir: &self.run_dir,
            capture_limit: 1 << 20,
            outputs: None,
        };
        let text = result.as_ref().map_or_else(String::new, |r| {
            lookup.output(&StepResult {
                state: current.clone(),
                step,
                verdict: None,
                result: r.clone(),
            })
        });
        let input = EvalInput {
            exit_code: result.as_ref().and_then(|r| r.exit_code),
            signal: None,
            timed_out: false,
            error: None,
            text: &text,
        };
        let verdict = evaluate::evaluate(&evaluator, &input, None).expect("not an llm evaluator");
        Event::Evaluated {
            state: current,
            step,
            verdict: verdict.verdict,
            detail: verdict.detail,
            metric: verdict.metric,
            convergence: None,
        }
    }
}

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

/// Creates run `id` in `store` whose log holds `records` records of the `a -> b` loop, written
/// in batches of `batch` records (one `write` + `fdatasync` each). With `snapshot`, a snapshot is
/// saved `tail` records before the end (a realistic run snapshots every 1,000 records, so keep
/// `tail` under 1,000), and the tail is written in step-sized batches of 5 like a live run.
///
/// # Panics
/// On any store error (a bench setup failure).
pub fn build_run(
    store: &FileStore,
    id: &str,
    records: u64,
    batch: usize,
    snapshot: bool,
    tail: u64,
) -> BuiltRun {
    let mut run = store.create_run(&run_meta(id)).expect("create run");
    let mut sim = Simulator::start(id, u64::MAX, Timestamp::from_millis(BASE_TS_MS));
    let snap_at = if snapshot {
        records.saturating_sub(tail)
    } else {
        u64::MAX
    };
    let mut written = 0u64;
    let mut snapshot_seq = None;
    let mut ts = BASE_TS_MS;
    while written < records {
        // Records still wanted in this batch: up to the snapshot point, then step-sized.
        let limit = if written < snap_at {
            (batch as u64).min(snap_at - written)
        } else {
            5
        }
        .min(records - written);
        while (sim.batch.len() as u64) < limit {
            sim.advance();
        }
        // `advance` records a whole step (5 records), so a batch may end up to 4 records past
        // `limit`. Every recorded event is written, so the fold stays equal to the log.
        let events = std::mem::take(&mut sim.batch);
        run.append(&events, Timestamp::from_millis(ts))
            .expect("append");
        written += events.len() as u64;
        if snapshot_seq.is_none() && written >= snap_at {
            run.save_snapshot(&sim.state).expect("snapshot");
            snapshot_seq = Some(written);
        }
        ts += 1;
        sim.ts = Timestamp::from_millis(ts);
    }
    BuiltRun {
        id: id.to_owned(),
        records: written,
        snapshot_seq,
    }
}

/// Creates a small completed run `id` (about 20 records: four steps, then `done`) written in
/// one batch, with a snapshot; the kind of run folder `dloop status` walks past.
///
/// # Panics
/// On any store error.
pub fn build_completed_run(store: &FileStore, id: &str) {
    let mut run = store.create_run(&run_meta(id)).expect("create run");
    let mut sim = Simulator::start(id, 200, Timestamp::from_millis(BASE_TS_MS));
    sim.fail_at_step = Some(4);
    while sim.advance() == Advance::ActionDue {}
    assert_eq!(sim.state.status, RunStatus::Completed, "the run completes");
    run.append(&sim.batch, Timestamp::from_millis(BASE_TS_MS))
        .expect("append");
    run.save_snapshot(&sim.state).expect("snapshot");
}

/// An action runner that spawns nothing: every action "exits 0" at once, printing `output`.
/// With it, a session's time per step is dloop's own work (decide, render, fold, encode,
/// write, sync) without the spawn.
#[derive(Debug, Clone, Default)]
pub struct TrivialRunner {
    /// What every action prints.
    pub output: Vec<u8>,
}

impl dloop_runtime::actions::ActionRunner for TrivialRunner {
    fn run(
        &self,
        _request: &dloop_runtime::actions::ActionRequest<'_>,
        io: &mut dloop_runtime::actions::ActionIo<'_, '_>,
    ) -> std::io::Result<dloop_runtime::actions::ActionOutcome> {
        use std::os::unix::process::ExitStatusExt;
        if !self.output.is_empty() {
            io.chunk(dloop_runtime::actions::output::Stream::Stdout, &self.output)?;
        }
        Ok(dloop_runtime::process::ProcessEnd {
            status: Some(std::process::ExitStatus::from_raw(0)),
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
