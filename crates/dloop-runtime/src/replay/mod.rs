//! `dloop replay RUN [LOOP] [--live]`: re-execute a loop definition against a recorded run,
//! reusing every recorded result whose call is the same, and stop (or, with `--live`, go on for
//! real) at the first step that differs.
//!
//! How: a new run of the definition is driven by an ordinary [`Session`] whose runners serve
//! the source's results ([`serve`]): every action result and judge answer is recorded with a
//! replay key ([`input_sha256`]), and the replay's step N reuses the source's step N result
//! when it is in the same state and its key matches (matching by key alone would be wrong: a
//! loop runs `test` many times with the same command and different results). Output bytes go
//! through the session's normal output path, so captures, evaluators, routing and the log are
//! exactly what a run would make; only no process starts. Waits (`delay`, backoff) take no time
//! while the replay follows the record.
//!
//! Where the replay lives is the caller's choice: `target` is any [`Store`]. The CLI gives a
//! temporary store for a plain replay (nothing remains among the project's runs) and the
//! project's store for `--live` (a real run, resumable like any, whose log starts with a
//! `replayed_from` record). The source is only read: its files stay byte-identical.
//!
//! What the replay takes from the source: its `run_started` context and `delay`, the
//! `max_steps`, timeout, `--no-llm` and budget in force at its end (so a pause the source was
//! resumed from with larger limits does not stop the replay), and a pause the replay reaches
//! where the source paused and was resumed (a handoff, an agent error) is resumed the same way.
//! Context values given to `resume -c` (recorded in the source's `run_resumed`) are applied at
//! the same point: the replay pauses before the first action the source started after that
//! resume and resumes with the same values (its log shows that pause and resume).
//! Values that differ by nature between two runs (`${run.elapsed_ms}`, the clock) make the
//! steps that use them diverge; the run's id and `${run.dir}` do not ([`key`]).

mod diverge;
mod host;
mod key;
pub mod recorded;
mod serve;

use std::sync::Arc;

use dloop_core::event::Event;
use dloop_core::model::LoopDef;
use dloop_core::run_id::RunId;
use dloop_core::state::RunStatus;
use dloop_core::transition::{ResumeRequest, resume_events};
use dloop_core::{Record, RunState};
use dloop_store::{RunMeta, Store, StoreError};

pub use diverge::{Divergence, DivergenceKind};
pub use key::input_sha256;
pub use recorded::{Recorded, RecordedStep, load};
pub use serve::Savings;

use crate::agent_runners::check_runners;
use crate::driver::{Session, SessionOptions};
use crate::error::RuntimeError;
use crate::observer::RunObserver;
use crate::runs::LocalDir;
use crate::scope::{Claim, ScopeRequest};
use serve::{ReplayAgents, ReplayClock, ReplayObserver, ReplayRunner, Replayer};

/// Resumes of a paused replay in one call, at most (each must make progress anyway).
const MAX_RESUMES: usize = 1000;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayRequest<'a> {
    /// The definition to re-execute (the source's own, or an edited file), validated.
    pub def: &'a LoopDef,
    /// Its text (kept in the replay run's `run.json`).
    pub definition_text: &'a str,
    /// Its file's absolute path, when it came from a file.
    pub loop_path: Option<String>,
    /// `--live`: from the divergence on, run for real.
    pub live: bool,
    /// The command line, for `run.json`.
    pub argv: Vec<String>,
    /// How a live replay takes the loop's scope (`None`: none, as for a plain replay, whose
    /// actions never run).
    pub scope: Option<ScopeRequest>,
}

/// How a replay went.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// The source run.
    pub source: String,
    /// The replay's own run (in the target store).
    pub run_id: String,
    /// Whether `--live` was asked for.
    pub live: bool,
    /// The replay's path, step by step.
    pub steps: Vec<ReplayedStep>,
    /// The first divergence, if any.
    pub divergence: Option<Divergence>,
    /// Whether a stop (SIGTERM, Ctrl-C, ...) paused the replay before it diverged: it neither
    /// matched nor diverged, it did not get to the end.
    pub stopped: bool,
    /// What reusing the record saved.
    pub saved: Savings,
    /// How the source ended (or where it is).
    pub recorded_end: EndPoint,
    /// How the replay ended.
    pub end: EndPoint,
    /// The replay's state at its end.
    pub state: RunState,
}

impl ReplayReport {
    /// Whether the replay followed the record to the source's end without a divergence.
    pub fn matched(&self) -> bool {
        self.divergence.is_none() && !self.stopped
    }
}

/// Where a run ended (or is): status, state and step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndPoint {
    /// Its status.
    pub status: RunStatus,
    /// Its state.
    pub state: Option<String>,
    /// Its step.
    pub step: u64,
}

impl EndPoint {
    fn of(state: &RunState) -> Self {
        Self {
            status: state.status,
            state: state.current.clone(),
            step: state.step,
        }
    }
}

/// `completed at step 6 in `done``: how the reports name an end.
impl std::fmt::Display for EndPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at step {}", self.status.as_str(), self.step)?;
        match &self.state {
            Some(state) => write!(f, " in `{state}`"),
            None => Ok(()),
        }
    }
}

/// Where a replayed step's result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepSource {
    /// Reused from the record: nothing ran.
    Reused,
    /// Run for real (`--live`, after the divergence).
    Live,
    /// The state has no action (a routing or terminal state), or it could not be rendered.
    NoAction,
    /// The replay stopped here (the divergence, without `--live`).
    Stopped,
}

impl StepSource {
    /// As `--json` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reused => "reused",
            Self::Live => "live",
            Self::NoAction => "no_action",
            Self::Stopped => "stopped",
        }
    }
}

/// One step of the replay beside the recorded step of the same number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedStep {
    /// The step number.
    pub step: u64,
    /// The state the replay entered.
    pub state: String,
    /// The replay's verdict.
    pub verdict: Option<String>,
    /// The state the recorded run entered at this step (`None`: it has no such step).
    pub recorded_state: Option<String>,
    /// The recorded verdict.
    pub recorded_verdict: Option<String>,
    /// Where the result came from.
    pub source: StepSource,
}

/// Replays `recorded` (read from the source store with [`load`]) into a new run of
/// `request.def` in `target`, and reports how it went.
///
/// # Errors
/// A loop this version cannot run, a runner profile that is not configured, `--live` for a
/// source that works in a git worktree, the target store's failures, or a scope held by
/// another run (live replays).
pub fn replay_run(
    recorded: Recorded,
    target: &dyn Store,
    local_dir: LocalDir<'_>,
    request: &ReplayRequest<'_>,
    options: SessionOptions,
    observer: &mut dyn RunObserver,
) -> Result<ReplayReport, RuntimeError> {
    let def = request.def;
    if request.live && recorded.meta.worktree.is_some() {
        // Its live steps would work in the project root, not in the source's worktree.
        return Err(RuntimeError::Replay(format!(
            "run {} works in a git worktree; replaying worktree runs with --live is not \
             supported yet (a replay without --live runs nothing and works)",
            recorded.meta.id
        )));
    }
    check_runners(def, &*options.agents)?;
    let stop = Arc::clone(&options.stop);
    let replayer = Arc::new(Replayer::new(
        recorded,
        def,
        request.live,
        Arc::clone(&stop),
    ));
    let recorded = &replayer.recorded;
    let mut options = options;
    options.shell = Arc::new(ReplayRunner {
        replayer: Arc::clone(&replayer),
        real: Arc::clone(&options.shell),
    });
    options.agents = Arc::new(ReplayAgents {
        replayer: Arc::clone(&replayer),
        real: Arc::clone(&options.agents),
    });
    // A `loop:` step is served from the record too; the real host runs children only once
    // live (`--live`, after the divergence).
    if let Some(real) = options.sub_loops.take() {
        options.sub_loops = Some(Arc::new(host::ReplayHost {
            replayer: Arc::clone(&replayer),
            real,
        }));
    }
    options.clock = Arc::new(ReplayClock {
        replayer: Arc::clone(&replayer),
        real: Arc::clone(&options.clock),
    });
    options.worktree = None;
    if !request.live {
        // Nothing runs, so nothing changes in the working tree.
        options.checkpoints = None;
    }
    let loop_name = recorded.meta.loop_name.clone();
    let gate = Claim::for_loop(
        def,
        &loop_name,
        &options.project_root,
        request.scope.as_ref(),
    )?
    .map(|claim| claim.enter(target))
    .transpose()?;
    let (run, meta) = create(recorded, target, request, &options)?;
    let mut ticket = gate.map(|gate| gate.register(&meta.id)).transpose()?;
    let run_dir = local_dir(&meta.id)?;
    crate::worktree::attach(&mut options, &meta, &run_dir)?;
    let mut watcher = ReplayObserver {
        replayer: Arc::clone(&replayer),
        inner: observer,
    };
    let mut session = Session::new(
        def,
        run,
        run_dir,
        RunState::default(),
        options,
        &mut watcher,
    );
    if let Some(started) = meta.started.clone() {
        session.record(started);
    }
    let source = &recorded.state;
    if source.judge_off || !source.budget.is_empty() {
        session.record(Event::RunOptions {
            no_llm: source.judge_off,
            budget: source.budget,
        });
    }
    session.record(Event::ReplayedFrom {
        run_id: recorded.meta.id.clone(),
    });
    crate::scope::take(&mut session, target, ticket.as_mut())?;
    let mut status = session.drive()?;
    // A pause the source was resumed from (a handoff, an agent error) is resumed the same way,
    // while the record has results left and nobody asked the replay to stop.
    // So is the pause the replay makes where the source was resumed with `resume -c`: the
    // replay resumes with the same values.
    for _ in 0..MAX_RESUMES {
        let (diverged, context) = {
            let mut progress = replayer.lock();
            (progress.divergence.is_some(), progress.resume_with.take())
        };
        if status != RunStatus::Paused
            || diverged
            || stop.level() != crate::process::StopLevel::None
            || (!replayer.has_unused() && context.is_none())
        {
            break;
        }
        let before = session.state().last_seq;
        let request = ResumeRequest {
            // The action this pause stopped never ran: it runs (is served) whatever the
            // state's `on_interrupted`.
            rerun: context.is_some(),
            context: context.unwrap_or_default(),
            ..ResumeRequest::default()
        };
        let events = resume_events(def, session.state(), &request)?;
        for event in events {
            session.record(event);
        }
        status = session.drive()?;
        if session.state().step == 0 || session.state().last_seq == before {
            break;
        }
    }
    let state = session.into_state();
    drop(watcher);
    let stopped =
        stop.level() != crate::process::StopLevel::None && state.status == RunStatus::Paused;
    let records: Vec<Record> = target
        .records_from(&meta.id, 1)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(report(
        recorded,
        &replayer,
        request.live,
        meta.id,
        state,
        &records,
        stopped,
    ))
}

/// Creates the replay's run in `target`: a fresh id of the source's loop, the source's context.
fn create(
    recorded: &Recorded,
    target: &dyn Store,
    request: &ReplayRequest<'_>,
    options: &SessionOptions,
) -> Result<(Box<dyn dloop_store::RunHandle>, RunMeta), RuntimeError> {
    let (context, delay_ms) = match &recorded.started {
        Event::RunStarted {
            context, delay_ms, ..
        } => (context.clone(), *delay_ms),
        _ => (recorded.meta.context.clone(), None),
    };
    let created_at = options.clock.now();
    let loop_name = &recorded.meta.loop_name;
    let definition_sha256 = RunMeta::sha256_hex(request.definition_text);
    for attempt in 0..64 {
        let id = RunId::new(loop_name, created_at, crate::runs::random_suffix(attempt))?;
        let started = Event::RunStarted {
            run_id: id.as_str().to_owned(),
            loop_name: loop_name.clone(),
            definition_sha256: definition_sha256.clone(),
            initial: request.def.initial.clone().unwrap_or_default(),
            context: context.clone(),
            max_steps: recorded.state.max_steps,
            timeout_ms: recorded.state.timeout_ms,
            delay_ms,
        };
        let meta = RunMeta {
            id: id.as_str().to_owned(),
            loop_name: loop_name.clone(),
            definition: request.definition_text.to_owned(),
            definition_sha256: definition_sha256.clone(),
            context: context.clone(),
            argv: request.argv.clone(),
            created_at,
            project_root: options.project_root.display().to_string(),
            loop_path: request.loop_path.clone(),
            started: Some(started),
            worktree: None,
        };
        match target.create_run(&meta) {
            Ok(mut run) => {
                // Replaying its own definition, the run's children come from where the
                // source's came from: its bundle when it was submitted ([`crate::subloop`]).
                if let Some(bundle) = &recorded.bundle
                    && definition_sha256 == recorded.meta.definition_sha256
                {
                    run.put_blob(crate::subloop::BUNDLE_BLOB, bundle)?;
                }
                return Ok((run, meta));
            }
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(RuntimeError::NoFreeId(loop_name.clone()))
}

/// The report of a replay that ended in `state` with `records` in its log (`stopped`: a stop
/// paused it).
fn report(
    recorded: &Recorded,
    replayer: &Replayer,
    live: bool,
    run_id: String,
    state: RunState,
    records: &[Record],
    stopped: bool,
) -> ReplayReport {
    let progress = replayer.lock();
    let mut divergence = progress.divergence.clone();
    let mut steps: Vec<ReplayedStep> = Vec::new();
    for record in records {
        match &record.event {
            Event::StateEntered {
                state: name, step, ..
            } => {
                if steps
                    .last()
                    .is_some_and(|s| s.step == *step && s.state == *name)
                {
                    continue;
                }
                let nth = steps.iter().filter(|s| s.step == *step).count();
                let recorded_step = recorded.entered(*step, nth);
                steps.push(ReplayedStep {
                    step: *step,
                    state: name.clone(),
                    verdict: None,
                    recorded_state: recorded_step.map(|s| s.state.clone()),
                    recorded_verdict: recorded_step.and_then(|s| s.verdict.clone()),
                    source: StepSource::NoAction,
                });
            }
            Event::ActionFinished { step, .. } => {
                if let Some(s) = steps.iter_mut().rev().find(|s| s.step == *step) {
                    s.source = if progress.live_steps.contains(step) {
                        StepSource::Live
                    } else if progress.reused_steps.contains(step) {
                        StepSource::Reused
                    } else {
                        // Not rendered: the action could not start, nothing ran or was reused.
                        StepSource::NoAction
                    };
                }
            }
            Event::Evaluated { step, verdict, .. } => {
                if let Some(s) = steps.iter_mut().rev().find(|s| s.step == *step) {
                    s.verdict = Some(verdict.clone());
                }
            }
            _ => {}
        }
    }
    if let Some(d) = &divergence
        && !live
    {
        // A plain replay stops at its divergence: what the session did after it (a routing
        // state's verdict) is not part of the path.
        if let Some(at) = steps
            .iter()
            .position(|s| s.step == d.step && s.state == d.state)
        {
            steps.truncate(at + 1);
            if steps[at].source != StepSource::Reused {
                steps[at].source = StepSource::Stopped;
            }
        }
    }
    let recorded_end = EndPoint::of(&recorded.state);
    let end = EndPoint::of(&state);
    // A replay a stop paused did not end elsewhere: it was cut short (`stopped`).
    if divergence.is_none() && !live && !stopped && end != recorded_end {
        divergence = Some(Divergence {
            step: end.step,
            state: end.state.clone().unwrap_or_default(),
            kind: DivergenceKind::End,
            reason: format!(
                "the replay ended {} where the recorded run ended {}",
                end, recorded_end
            ),
        });
    }
    ReplayReport {
        source: recorded.meta.id.clone(),
        run_id,
        live,
        steps,
        stopped: stopped && divergence.is_none(),
        divergence,
        saved: progress.saved.clone(),
        recorded_end,
        end,
        state,
    }
}
