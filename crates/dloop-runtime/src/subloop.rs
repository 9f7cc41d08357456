//! Sub-loops: a `loop: NAME` state runs loop NAME as a child run, with its own log and
//! checkpoint, and the child's end becomes the state's result.
//!
//! The seam is [`SubLoopHost`] (in `SessionOptions::sub_loops`): the composition root says how a
//! loop name becomes a definition and which store and local folders runs use, so this module
//! works with any [`Store`] (the file store, PostgreSQL). The parent's side of a step (its
//! records) is in `driver/sub_loop.rs`; this file creates, continues and reads child runs.
//!
//! Durability, in order (the parent's step):
//! 1. the parent's `action_started` (kind `sub_loop`) is durable, as for any action;
//! 2. a fresh child id is chosen and the parent's `sub_loop_started {state, step, child_run_id}`
//!    is appended and synced in its own batch, *before* the child run exists;
//! 3. the child run is created with that id; its first batch is `run_started` then
//!    `sub_loop_of {run_id, state, step, depth}` naming the parent;
//! 4. the child is driven in this process, under its own run lock, to its end or a pause;
//! 5. the parent records the step's `action_finished` (or `action_interrupted` + `run_paused`).
//!
//! A resume of the parent re-runs the interrupted step (same step, same idempotency key); the
//! step finds its child through `sub_loop_started` and continues it from its own log: a
//! finished child's result is taken as it is, a paused or crashed one is resumed (its finished
//! steps are never run again), and one that a crash left uncreated (between 2 and 3) is created
//! now with the recorded id.
//!
//! Semantics the module keeps:
//! - the child works in the parent's working directory (its worktree included) and takes no
//!   scope lock: the parent holds the scope for it (a child with the same scope would
//!   otherwise wait for its own parent forever);
//! - it shares the parent's stop flag and signals: a stop pauses the child, then the parent;
//! - it runs under what its parent's budget leaves ([`inherit`]), so a child cannot overspend
//!   a budget its spend reaches only when it ends;
//! - resumed on its own, it works in its nearest ancestor's worktree ([`ancestor_worktree`]);
//!   while it runs so, its parent is not resumed ([`refuse_live_child`]): one driver a run;
//! - depth is bounded at run time by [`MAX_DEPTH`] (validation refuses cycles; a long chain
//!   of distinct loops is refused here, failing the step with an `error`);
//! - the step's output is one JSON object (`outcome_json`), which is how the parent reads the
//!   child's final context and captures.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dloop_core::event::{ActionResult, AgentOutcome, AgentReport, Event};
use dloop_core::model::LoopDef;
use dloop_core::run_id::RunId;
use dloop_core::state::{RunStatus, StepResult};
use dloop_core::transition::ResumeRequest;
use dloop_core::{RunState, Timestamp};
use dloop_store::{RunHandle, Store, StoreErrorKind};
use serde::Serialize;

use crate::actions::output::Stream;
use crate::actions::{ActionIo, ActionOutcome, ActionRequest, AgentActivity};
use crate::driver::{Session, SessionOptions};
use crate::error::RuntimeError;
use crate::observer::RunObserver;
use crate::runs::{ResumeInput, RunOptions, StartRequest};

mod bundle;
mod inherit;
pub use bundle::{BUNDLE_BLOB, BundledLoop, SubLoopBundle};
pub(crate) use inherit::{Inherited, budget_left};

/// How deep sub-loops may nest: a top-level run is depth 0, its children depth 1, and a child
/// at a depth beyond this is not created (its step ends with an `error` verdict).
pub const MAX_DEPTH: u32 = 8;

/// A loop a `loop:` state names, as the project has it now, validated.
#[derive(Debug, Clone)]
pub struct ChildLoop {
    /// The loop's name, as `dloop run NAME` names it (child run ids start with it).
    pub name: String,
    /// The parsed loop.
    pub def: LoopDef,
    /// The file's text (kept in the child's `run.json`).
    pub text: String,
    /// The file's absolute path, when known.
    pub path: Option<String>,
}

/// What a session needs from its composition root to run `loop:` states.
pub trait SubLoopHost: Send + Sync {
    /// The loop named `name`, read and validated as `dloop run NAME` would; `Err` is a sentence
    /// for the user (the step then ends with an `error` verdict saying it).
    fn load(&self, name: &str) -> Result<ChildLoop, String>;

    /// The store child runs live in: the parent's.
    fn store(&self) -> &dyn Store;

    /// The local folder of run `run_id` on this machine (its `work/` is `${run.dir}`).
    ///
    /// # Errors
    /// The id cannot name a folder.
    fn local_dir(&self, run_id: &str) -> dloop_store::Result<PathBuf>;

    /// The bundle the children of run `parent_run` resolve from ([`SubLoopBundle`]: kept with
    /// a submitted run, and with each child created from one); `Ok(None)`: they resolve with
    /// [`SubLoopHost::load`] and keep no bundle. `Err` is a sentence for the user.
    fn bundle_for(&self, parent_run: &str) -> Result<Option<SubLoopBundle>, String> {
        let _ = parent_run;
        Ok(None)
    }

    /// The loop a `loop: NAME` state of run `parent_run` starts: from the run's bundle when it
    /// has one (never from anywhere else then), else [`SubLoopHost::load`].
    fn load_for(&self, parent_run: &str, name: &str) -> Result<ChildLoop, String> {
        match self.bundle_for(parent_run)? {
            Some(bundle) => bundle.load(name),
            None => self.load(name),
        }
    }

    /// A recorded result for the `loop:` call `request` (its text is the step's loop and
    /// rendered `with:` values), written through `io`; `None`: run the child. Only a replay's
    /// host answers (`crate::replay`): a replay serves a recorded `loop:` step like any
    /// recorded action, without creating or running a child.
    fn replayed(
        &self,
        request: &ActionRequest<'_>,
        io: &mut ActionIo<'_, '_>,
    ) -> Option<std::io::Result<ActionOutcome>> {
        let _ = (request, io);
        None
    }
}

/// Refuses a loop with `loop:` states when the session has no [`SubLoopHost`].
///
/// # Errors
/// [`RuntimeError::Unsupported`] naming the first such state.
pub fn check_sub_loops(def: &LoopDef, options: &SessionOptions) -> Result<(), RuntimeError> {
    if options.sub_loops.is_some() {
        return Ok(());
    }
    match def.states.iter().find(|(_, s)| s.sub_loop.is_some()) {
        Some((name, _)) => Err(RuntimeError::Unsupported(format!(
            "state `{name}` runs a sub-loop, which this caller cannot run (it knows no loops \
             and no store for child runs)"
        ))),
        None => Ok(()),
    }
}

/// A child run about to be created.
#[derive(Debug)]
pub(crate) struct ChildStart {
    /// Its loop.
    pub(crate) child: ChildLoop,
    /// Its context: the loop's defaults, then the state's `with:` values.
    pub(crate) context: BTreeMap<String, String>,
    /// What it inherits from its parent.
    pub(crate) inherited: Inherited,
}

/// How a child's session ended.
#[derive(Debug)]
pub(crate) struct ChildEnd {
    /// The child run.
    pub(crate) run_id: String,
    /// Its status when its session ended.
    pub(crate) status: RunStatus,
    /// Its state.
    pub(crate) state: RunState,
}

/// A fresh id for a child of loop `name`: one no run of the store has.
///
/// # Errors
/// The store failed, or no free id was found.
pub(crate) fn fresh_id(
    store: &dyn Store,
    name: &str,
    now: Timestamp,
) -> Result<String, RuntimeError> {
    for attempt in 0..64 {
        let id = RunId::new(name, now, crate::runs::random_suffix(attempt))?;
        match store.read_meta(id.as_str()) {
            Err(err) if err.kind() == StoreErrorKind::NotFound => {
                return Ok(id.as_str().to_owned());
            }
            Err(err) => return Err(err.into()),
            Ok(_) => continue,
        }
    }
    Err(RuntimeError::NoFreeId(name.to_owned()))
}

/// Creates child run `id` of `start` (linked to its parent by `link`, a `sub_loop_of`) and
/// drives it until it ends or pauses. A leftover of a creation cut short under that id is
/// removed first.
///
/// # Errors
/// Store failures, and failures of the child's own I/O.
pub(crate) fn create_child(
    host: &dyn SubLoopHost,
    id: &str,
    start: &ChildStart,
    link: Event,
    options: SessionOptions,
    observer: &mut dyn RunObserver,
) -> Result<ChildEnd, RuntimeError> {
    let store = host.store();
    let def = &start.child.def;
    let name = start.child.name.clone();
    let request = StartRequest {
        def,
        definition_text: &start.child.text,
        loop_name: &name,
        loop_path: start.child.path.clone(),
        context: start.context.clone(),
        argv: vec!["dloop".into(), "run".into(), name.clone()],
        max_steps: def.limits.max_steps(),
        timeout_ms: def.limits.timeout.map(dloop_core::HumanDuration::as_millis),
        delay_ms: def.delay.map(dloop_core::HumanDuration::as_millis),
        scope: None,
        options: RunOptions {
            no_llm: start.inherited.no_llm,
            budget: start.inherited.budget_for(def),
        },
    };
    let run_id = RunId::parse(id)?;
    let meta = crate::runs::new_meta(
        &request,
        &run_id,
        options.clock.now(),
        &options.project_root,
    );
    let run = match store.create_run(&meta) {
        Err(err) if err.kind() == StoreErrorKind::AlreadyExists => {
            // Only a creation cut short can hold this id: it was free when it was recorded.
            store.remove_incomplete(id)?;
            store.create_run(&meta)?
        }
        other => other?,
    };
    let mut run = run;
    keep_bundle(host, &link, &mut *run)?;
    let started = meta
        .started
        .clone()
        .expect("new_meta always sets run_started");
    drive_new(
        host,
        def,
        run,
        &meta,
        vec![started, link],
        start.inherited,
        options,
        observer,
    )
}

/// Writes the bundle of the parent `link` names, if it has one, as the blob of the child `run`
/// (before the child's first record, so a child with records always has it): the child's own
/// children resolve from it, wherever the child is resumed.
fn keep_bundle(
    host: &dyn SubLoopHost,
    link: &Event,
    run: &mut dyn RunHandle,
) -> Result<(), RuntimeError> {
    let Event::SubLoopOf { run_id: parent, .. } = link else {
        return Ok(());
    };
    let bundle = host
        .bundle_for(parent)
        .map_err(|message| RuntimeError::StoredDefinition {
            run_id: parent.clone(),
            message,
        })?;
    if let Some(bundle) = bundle {
        run.put_blob(BUNDLE_BLOB, &bundle.to_bytes())?;
    }
    Ok(())
}

/// Drives a child run whose log is empty: `first` (its `run_started` and `sub_loop_of`) is its
/// first batch.
#[allow(clippy::too_many_arguments)]
fn drive_new(
    host: &dyn SubLoopHost,
    def: &LoopDef,
    run: Box<dyn RunHandle>,
    meta: &dloop_store::RunMeta,
    first: Vec<Event>,
    inherited: Inherited,
    options: SessionOptions,
    observer: &mut dyn RunObserver,
) -> Result<ChildEnd, RuntimeError> {
    let run_dir = host.local_dir(&meta.id)?;
    let mut options = options;
    crate::worktree::attach(&mut options, meta, &run_dir)?;
    let mut session = Session::new(def, run, run_dir, RunState::default(), options, observer);
    for event in first {
        session.record(event);
    }
    let budget = inherited.budget_for(def);
    if inherited.no_llm || !budget.is_empty() {
        session.record(Event::RunOptions {
            no_llm: inherited.no_llm,
            budget,
        });
    }
    let status = session.drive()?;
    Ok(ChildEnd {
        run_id: meta.id.clone(),
        status,
        state: session.into_state(),
    })
}

/// Continues child run `id` from its own log: a finished (or timed-out) child is read as it
/// is; one whose log is still empty is started with `link` (and what it `inherited`); any
/// other is resumed as `dloop resume` would (no scope, no reload: it keeps the definition it
/// started with), under what is left of the parent's budget now (a parent resumed with a
/// larger budget passes it on).
///
/// # Errors
/// The child is live in another process, its log is damaged, or the store failed.
pub(crate) fn continue_child(
    host: &dyn SubLoopHost,
    id: &str,
    link: Event,
    inherited: Inherited,
    options: SessionOptions,
    observer: &mut dyn RunObserver,
) -> Result<ChildEnd, RuntimeError> {
    let store = host.store();
    let (state, _) = store.load_state(id)?;
    if state.status.is_finished() || state.status == RunStatus::TimedOut {
        return Ok(ChildEnd {
            run_id: id.to_owned(),
            status: state.status,
            state,
        });
    }
    if state.last_seq == 0 {
        let meta = store.read_meta(id)?;
        let def = crate::runs::parse_definition(id, &meta.definition)?;
        crate::agent_runners::check_runners(&def, &*options.agents)?;
        let mut run = store.open_run(id)?;
        // Under the lock now: a torn first batch a crash left is cut, and the handle may append.
        let (locked, _) = run.load_state()?;
        if locked.last_seq != 0 {
            // Another process wrote its first records between the look above and the lock.
            drop(run);
            return continue_child(host, id, link, inherited, options, observer);
        }
        keep_bundle(host, &link, &mut *run)?;
        let Some(started) = meta.started.clone() else {
            return Err(dloop_core::transition::ResumeError::NeverStarted {
                run_id: id.to_owned(),
            }
            .into());
        };
        return drive_new(
            host,
            &def,
            run,
            &meta,
            vec![started, link],
            inherited,
            options,
            observer,
        );
    }
    let input = ResumeInput {
        run_id: id.to_owned(),
        current_definition: None,
        reload: false,
        request: ResumeRequest {
            budget: inherited.budget_for(&resumed_def(store, id)?),
            ..ResumeRequest::default()
        },
        scope: None,
    };
    let local_dir = |id: &str| host.local_dir(id);
    let end = crate::runs::resume_run(store, &local_dir, &input, options, observer)?;
    Ok(ChildEnd {
        run_id: end.run_id,
        status: end.status,
        state: end.state,
    })
}

/// Where a sub-loop run works when it is resumed on its own (`dloop resume CHILD`): in its
/// nearest ancestor's worktree, when that ancestor runs in one (a child works where its parent
/// works, see the module documentation); `None`: where the caller is (the project). A parent
/// that no longer exists leaves the child in the project.
///
/// # Errors
/// The ancestor's worktree is gone ([`crate::worktree::check`]), or the store failed.
pub(crate) fn ancestor_worktree(
    store: &dyn Store,
    state: &RunState,
) -> Result<Option<PathBuf>, RuntimeError> {
    let mut parent = state.parent.as_ref().map(|p| p.run_id.clone());
    // Bounded: a chain is at most MAX_DEPTH long, and a tampered log must not loop forever.
    for _ in 0..=MAX_DEPTH {
        let Some(id) = parent else { break };
        let meta = match store.read_meta(&id) {
            Ok(meta) => meta,
            Err(err) if err.kind() == StoreErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        if let Some(worktree) = &meta.worktree {
            return crate::worktree::check(&id, worktree).map(Some);
        }
        let (above, _) = store.load_state(&id)?;
        parent = above.parent.map(|p| p.run_id);
    }
    Ok(None)
}

/// Refuses to resume a run whose current step's sub-loop run is live in another process (a
/// `dloop resume CHILD` under way): the parent's resume would record its step as started
/// again, then fail to take the child's lock, leaving itself `crashed`. Checked before
/// anything is recorded; a child that becomes live right after is still refused by its lock.
///
/// # Errors
/// [`RuntimeError::ChildLive`], or the store failed.
pub(crate) fn refuse_live_child(store: &dyn Store, state: &RunState) -> Result<(), RuntimeError> {
    let Some(child) = state.child_of_step(state.step) else {
        return Ok(());
    };
    let own = store
        .load_state(&child.run_id)
        .is_ok_and(|(c, _)| c.parent.is_some_and(|p| p.run_id == state.run_id));
    if own && store.is_live(&child.run_id)? {
        return Err(RuntimeError::ChildLive {
            run_id: state.run_id.clone(),
            child: child.run_id.clone(),
        });
    }
    Ok(())
}

/// The definition a resume of child `id` drives: the one it started with, or the last one a
/// `dloop resume CHILD --reload` recorded.
fn resumed_def(store: &dyn Store, id: &str) -> Result<LoopDef, RuntimeError> {
    let meta = store.read_meta(id)?;
    let mut text = meta.definition.clone();
    for record in store.records_from(id, 1)? {
        if let Event::DefinitionReloaded { definition_sha256 } = record?.event
            && let Some(bytes) =
                store.get_blob(id, &format!("definition-{definition_sha256}.yaml"))?
        {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    crate::runs::parse_definition(id, &text)
}

/// The step's output of a child that ended: the child's final context and captures, as one
/// JSON object (see the README's "Sub-loops"):
/// `{"run_id", "loop", "status", "state", "error"?, "context": {K: V}, "captured": {NAME:
/// {"output", "exit_code"?, "verdict"?}}}`. Capture outputs are read as
/// `${captured.NAME.output}` reads them in the child ([`capture_output`]).
pub(crate) fn outcome_json(host: &dyn SubLoopHost, end: &ChildEnd, capture_limit: u64) -> String {
    #[derive(Serialize)]
    struct Captured {
        output: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        verdict: Option<String>,
    }
    #[derive(Serialize)]
    struct Outcome<'a> {
        run_id: &'a str,
        #[serde(rename = "loop")]
        loop_name: &'a str,
        status: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        state: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
        context: &'a BTreeMap<String, String>,
        captured: BTreeMap<&'a str, Captured>,
    }
    let state = &end.state;
    let captured = state
        .captures
        .iter()
        .map(|(name, result): (&String, &StepResult)| {
            (
                name.as_str(),
                Captured {
                    output: capture_output(
                        host.store(),
                        &end.run_id,
                        &result.result,
                        capture_limit,
                    ),
                    exit_code: result.result.exit_code,
                    verdict: result.verdict.clone(),
                },
            )
        })
        .collect();
    let outcome = Outcome {
        run_id: &end.run_id,
        loop_name: &state.loop_name,
        status: end.status.as_str(),
        state: state.current.as_deref(),
        error: match end.status {
            RunStatus::Completed => None,
            _ => state.message.as_deref().or(state.last_error.as_deref()),
        },
        context: &state.context,
        captured,
    };
    serde_json::to_string(&outcome).expect("strings and numbers always serialize")
}

/// A child's captured output as `${captured.NAME.output}` reads it: whole when the log kept it
/// whole, else its last `capture_limit` bytes from the child's output stream (read through the
/// store, without the child's lock), else the log's excerpt.
fn capture_output(store: &dyn Store, run_id: &str, result: &ActionResult, limit: u64) -> String {
    let excerpt = || result.excerpt.clone();
    let Some(offset) = result.output_offset.filter(|_| !result.complete) else {
        return excerpt();
    };
    let keep = result.bytes.min(limit);
    let from = offset + (result.bytes - keep);
    match store.read_output(run_id, from, Some(offset + result.bytes)) {
        Ok((bytes, _)) if bytes.len() as u64 == keep => {
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => excerpt(),
    }
}

/// The child's agent spend as one agent report for the parent's step, so it counts in the
/// parent's figures and budgets; `None` when the child called no agent.
pub(crate) fn spend(end: &ChildEnd) -> Option<AgentReport> {
    let totals = &end.state.agent;
    if totals.is_empty() {
        return None;
    }
    Some(AgentReport {
        profile: format!("loop:{}", end.state.loop_name),
        outcome: if end.status == RunStatus::Completed {
            AgentOutcome::Success
        } else {
            AgentOutcome::Failure
        },
        final_text: None,
        model: totals.model.clone(),
        turns: Some(totals.turns),
        tokens: totals.tokens,
        cost_usd: Some(totals.cost_usd),
        message: None,
        resets_at: None,
        continued: false,
    })
}

/// What a child's session shows through its parent's observer: its output and agent activity
/// as they arrive, and its waits, as the parent's action's; its records (its own log's, not the
/// parent's) as [`RunObserver::on_child_record`], a grandchild's with its own depth.
pub(crate) struct ChildObserver<'a> {
    /// The parent session's observer.
    pub(crate) parent: &'a mut dyn RunObserver,
    /// The child's depth below the run the parent's observer observes (1: its child).
    pub(crate) depth: u32,
}

impl RunObserver for ChildObserver<'_> {
    fn on_record(&mut self, record: &dloop_core::Record, state: &RunState) {
        self.parent.on_child_record(self.depth, record, state);
    }

    fn on_child_record(&mut self, depth: u32, record: &dloop_core::Record, state: &RunState) {
        self.parent
            .on_child_record(self.depth + depth, record, state);
    }

    fn on_output(&mut self, stream: Stream, bytes: &[u8]) {
        self.parent.on_output(stream, bytes);
    }

    fn on_wait(&mut self, wait: std::time::Duration, why: &str) {
        self.parent.on_wait(wait, why);
    }

    fn on_agent_activity(&mut self, activity: &AgentActivity) {
        self.parent.on_agent_activity(activity);
    }
}
