//! Beginning, continuing and ending runs: `run`, `resume` and `cancel` below the CLI.
//!
//! Each takes the run's claim for as long as it works on the run, so two processes never write
//! one log; storage is reached only through [`Store`]. A resumed run uses the definition it
//! started with (its copy in `run.json`, which the store checks against the hash the log's
//! first record holds),
//! unless the loop file changed and the caller says `--reload`: the new text, validated as
//! `dloop validate` does, is then kept as the run's blob `definition-<sha256>.yaml` (durable
//! before the `definition_reloaded` record that names it) so later resumes find it even if the
//! file changes again.
//!
//! The run's local folder (`${run.dir}` is its `work/`; action outputs) is a path on this
//! machine that the composition root gives: the store has no paths.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;

use dloop_core::RunState;
use dloop_core::event::Event;
use dloop_core::model::LoopDef;
use dloop_core::run_id::RunId;
use dloop_core::state::RunStatus;
use dloop_core::transition::{ResumeRequest, resume_events};
use dloop_store::{RunHandle, RunMeta, Store, StoreError};

use crate::agent_runners::check_runners;
use crate::driver::{Session, SessionOptions, now};
use crate::error::RuntimeError;
use crate::observer::RunObserver;
use crate::scope::{Claim, ScopeRequest};

/// What `dloop run` starts.
#[derive(Debug, Clone)]
pub struct StartRequest<'a> {
    /// The loop, parsed and validated.
    pub def: &'a LoopDef,
    /// The loop file's text (kept in `run.json`).
    pub definition_text: &'a str,
    /// The loop's name (the run id starts with it).
    pub loop_name: &'a str,
    /// The loop file's absolute path, when it came from a file.
    pub loop_path: Option<String>,
    /// The resolved context.
    pub context: BTreeMap<String, String>,
    /// The command line, for `run.json`.
    pub argv: Vec<String>,
    /// `--max-steps`, else the loop's.
    pub max_steps: u64,
    /// `--timeout`, else the loop's.
    pub timeout_ms: Option<u64>,
    /// `--delay`, else the loop's.
    pub delay_ms: Option<u64>,
    /// How to take the loop's scope (`None`: `--no-lock`).
    pub scope: Option<ScopeRequest>,
    /// `--no-llm`, `--max-cost-usd` ...: recorded as `run_options` after `run_started`.
    pub options: RunOptions,
}

/// Options of `dloop run` the log keeps for every session of the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    /// `--no-llm`: prompt states without an explicit evaluator are judged by their agent's
    /// outcome, not by the `llm` judge.
    pub no_llm: bool,
    /// Run budget limits over the loop's.
    pub budget: dloop_core::budget::Budget,
}

/// How a session ended.
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// The run.
    pub run_id: String,
    /// Its status when the session ended.
    pub status: RunStatus,
    /// Its state.
    pub state: RunState,
}

pub(crate) fn random_suffix(attempt: u32) -> u16 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u32(attempt);
    hasher.write_u128(
        std::time::SystemTime::now()
            .elapsed()
            .map_or(0, |d| d.as_nanos()),
    );
    (hasher.finish() & 0xffff) as u16
}

/// The local folder of a run (`work/` in it is `${run.dir}`), as the composition root lays
/// runs out on this machine.
/// Fails only for an id that cannot name a folder.
pub type LocalDir<'a> = &'a dyn Fn(&str) -> dloop_store::Result<PathBuf>;

/// Creates a run (a fresh id: two runs started in the same second never share a folder) and
/// drives it until it ends, pauses or is stopped.
///
/// # Errors
/// Store failures, or a loop this version cannot run.
pub fn start_run(
    store: &dyn Store,
    local_dir: LocalDir<'_>,
    request: &StartRequest<'_>,
    options: SessionOptions,
    observer: &mut dyn RunObserver,
) -> Result<RunEnd, RuntimeError> {
    check_runners(request.def, &*options.agents)?;
    crate::subloop::check_sub_loops(request.def, &options)?;
    let worktree = match &options.worktree {
        Some(req) => Some((
            req.clone(),
            crate::worktree::prepare(&options.project_root, req)?,
        )),
        None => None,
    };
    // A worktree run's files are its own: there is nothing to share a scope with.
    let scope = request.scope.as_ref().filter(|_| worktree.is_none());
    // The registry stays locked from the check until the new run is registered: a refused run
    // leaves no folder behind, and no other run can slip in between.
    let gate = Claim::for_loop(request.def, request.loop_name, &options.project_root, scope)?
        .map(|claim| claim.enter(store))
        .transpose()?;
    let created_at = options.clock.now();
    let mut created = None;
    for attempt in 0..64 {
        let id = RunId::new(request.loop_name, created_at, random_suffix(attempt))?;
        let mut meta = new_meta(request, &id, created_at, &options.project_root);
        meta.worktree = match &worktree {
            Some((req, (repo, base))) => {
                Some(crate::worktree::create(repo, &req.dir, id.as_str(), base)?)
            }
            None => None,
        };
        // The worktree exists before run.json names it; a run that is not created takes its
        // worktree (empty, just made) away again.
        let undo = |meta: &RunMeta| {
            if let (Some(wt), Some((_, (repo, _)))) = (&meta.worktree, &worktree) {
                crate::worktree::discard_new(repo, wt);
            }
        };
        match store.create_run(&meta) {
            Ok(run) => {
                created = Some((run, meta));
                break;
            }
            Err(StoreError::AlreadyExists { .. }) => {
                undo(&meta);
                continue;
            }
            Err(err) => {
                undo(&meta);
                return Err(err.into());
            }
        }
    }
    let Some((run, meta)) = created else {
        return Err(RuntimeError::NoFreeId(request.loop_name.to_owned()));
    };
    let mut ticket = gate.map(|gate| gate.register(&meta.id)).transpose()?;
    let run_dir = local_dir(&meta.id)?;
    let mut options = options;
    crate::worktree::attach(&mut options, &meta, &run_dir)?;
    let mut session = Session::new(
        request.def,
        run,
        run_dir,
        RunState::default(),
        options,
        observer,
    );
    if let Some(started) = meta.started.clone() {
        session.record(started);
    }
    if request.options != RunOptions::default() {
        session.record(Event::RunOptions {
            no_llm: request.options.no_llm,
            budget: request.options.budget,
        });
    }
    crate::scope::take(&mut session, store, ticket.as_mut())?;
    let status = session.drive()?;
    Ok(RunEnd {
        run_id: meta.id,
        status,
        state: session.into_state(),
    })
}

/// The metadata of a new run `id` of `request` (its `run_started` record in `started`).
pub(crate) fn new_meta(
    request: &StartRequest<'_>,
    id: &RunId,
    created_at: dloop_core::Timestamp,
    project_root: &std::path::Path,
) -> RunMeta {
    let definition_sha256 = RunMeta::sha256_hex(request.definition_text);
    let started = Event::RunStarted {
        run_id: id.as_str().to_owned(),
        loop_name: request.loop_name.to_owned(),
        definition_sha256: definition_sha256.clone(),
        initial: request.def.initial.clone().unwrap_or_default(),
        context: request.context.clone(),
        max_steps: request.max_steps,
        timeout_ms: request.timeout_ms,
        delay_ms: request.delay_ms,
    };
    RunMeta {
        id: id.as_str().to_owned(),
        loop_name: request.loop_name.to_owned(),
        definition: request.definition_text.to_owned(),
        definition_sha256,
        context: request.context.clone(),
        argv: request.argv.clone(),
        created_at,
        project_root: project_root.display().to_string(),
        loop_path: request.loop_path.clone(),
        started: Some(started),
        worktree: None,
    }
}

/// Stores a submitted run: its metadata and, when it has `loop:` states, its sub-loop bundle's
/// bytes (see [`submit_run`]).
pub type CreateSubmitted<'a> = dyn FnMut(&RunMeta, Option<&[u8]>) -> Result<(), StoreError> + 'a;

/// Creates a run of `request` without driving it, for workers (`dloop submit`): `create` stores
/// the new run's metadata (its `run_started` record is in [`RunMeta::started`]: whoever drives
/// it first writes it, as resume does for a run that never started) and, when the loop has
/// `loop:` states, `bundle` as its [`crate::subloop::BUNDLE_BLOB`] in the same creation. A
/// fresh id is tried while `create` finds the id taken.
///
/// # Errors
/// A `loop:` state whose loop `bundle` lacks (a worker could not start that child), or
/// `create`'s failure.
pub fn submit_run(
    request: &StartRequest<'_>,
    bundle: &crate::subloop::SubLoopBundle,
    project_root: &std::path::Path,
    created_at: dloop_core::Timestamp,
    create: &mut CreateSubmitted<'_>,
) -> Result<RunMeta, RuntimeError> {
    if let Some((state, name)) = request
        .def
        .states
        .iter()
        .find_map(|(n, s)| s.sub_loop.as_ref().map(|l| (n, l)))
        .filter(|(_, l)| !bundle.loops.contains_key(*l))
    {
        return Err(RuntimeError::Unsupported(format!(
            "state `{state}` runs sub-loop `{name}`, which is not in the loops kept with the run"
        )));
    }
    let blob = (!bundle.is_empty()).then(|| bundle.to_bytes());
    for attempt in 0..64 {
        let id = RunId::new(request.loop_name, created_at, random_suffix(attempt))?;
        let meta = new_meta(request, &id, created_at, project_root);
        match create(&meta, blob.as_deref()) {
            Ok(()) => return Ok(meta),
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(RuntimeError::NoFreeId(request.loop_name.to_owned()))
}

/// What `dloop resume` continues.
#[derive(Debug, Clone, Default)]
pub struct ResumeInput {
    /// The run.
    pub run_id: String,
    /// The loop file as it is now, if it still exists.
    pub current_definition: Option<String>,
    /// `--reload`: accept a changed loop file.
    pub reload: bool,
    /// Overrides and decisions.
    pub request: ResumeRequest,
    /// How to take the run's scope again (`None`: `--no-lock`).
    pub scope: Option<ScopeRequest>,
}

/// The blob name of a definition accepted by `--reload`.
fn reloaded_name(sha256: &str) -> String {
    format!("definition-{sha256}.yaml")
}

/// The definition text a run is using: its start copy, or the last one `--reload` accepted
/// (checked against the hash its `definition_reloaded` record holds).
///
/// # Errors
/// [`RuntimeError::StoredDefinition`] when a reloaded definition is missing or altered.
pub fn definition_in_force(
    store: &dyn Store,
    meta: &RunMeta,
    state: &RunState,
) -> Result<String, RuntimeError> {
    if state.definition_sha256.is_empty() || state.definition_sha256 == meta.definition_sha256 {
        return Ok(meta.definition.clone());
    }
    let name = reloaded_name(&state.definition_sha256);
    let bytes = store.get_blob(&meta.id, &name)?;
    let text = bytes.and_then(|b| String::from_utf8(b).ok());
    match text {
        Some(text) if RunMeta::sha256_hex(&text) == state.definition_sha256 => Ok(text),
        found => Err(RuntimeError::StoredDefinition {
            run_id: meta.id.clone(),
            message: format!(
                "the reloaded definition `{name}` is {}",
                if found.is_some() {
                    "altered"
                } else {
                    "missing"
                }
            ),
        }),
    }
}

/// Parses a stored definition.
///
/// # Errors
/// [`RuntimeError::StoredDefinition`] with the first problem.
pub fn parse_definition(run_id: &str, text: &str) -> Result<LoopDef, RuntimeError> {
    dloop_core::parse::parse_loop(text.as_bytes())
        .map(|parsed| parsed.def)
        .map_err(|diags| RuntimeError::StoredDefinition {
            run_id: run_id.to_owned(),
            message: diags
                .first()
                .map_or_else(|| "unknown error".to_owned(), |d| d.message.clone()),
        })
}

/// Continues a paused, crashed or timed-out run and drives it.
///
/// # Errors
/// The run is live elsewhere, finished, out of time, its file changed without `--reload` (or
/// with `--reload` and the new file is invalid), its `run.json` does not match its log, or the
/// store failed.
pub fn resume_run(
    store: &dyn Store,
    local_dir: LocalDir<'_>,
    input: &ResumeInput,
    options: SessionOptions,
    observer: &mut dyn RunObserver,
) -> Result<RunEnd, RuntimeError> {
    let meta = store.read_meta(&input.run_id)?;
    let mut run = store.open_run(&input.run_id)?;
    let (state, info) = run.load_state()?;
    crate::subloop::refuse_live_child(store, &state)?;
    let run_dir = local_dir(&input.run_id)?;
    crate::reaper::end_leftover_action(&input.run_id);
    let mut options = options;
    if meta.worktree.is_none()
        && let Some(root) = crate::subloop::ancestor_worktree(store, &state)?
    {
        options.project_root = root;
    }
    crate::worktree::attach(&mut options, &meta, &run_dir)?;
    if state.last_seq == 0 {
        // The run died after its folder was made and before its first record was durable:
        // nothing ran. Start it now, as `dloop run` would have (run.json keeps its first
        // record); a run.json from before that was kept has nothing to start from.
        let Some(started) = meta.started.clone() else {
            return Err(dloop_core::transition::ResumeError::NeverStarted {
                run_id: input.run_id.clone(),
            }
            .into());
        };
        let def = parse_definition(&input.run_id, &meta.definition)?;
        check_runners(&def, &*options.agents)?;
        crate::subloop::check_sub_loops(&def, &options)?;
        let mut ticket = admit_scope(store, &def, &meta, &options, input)?;
        let mut session = Session::new(&def, run, run_dir, state, options, observer);
        session.record(started);
        if let Some(repair) = &info.repair {
            session.record(Event::LogRepaired {
                dropped_bytes: repair.dropped_bytes,
                reason: repair.reason.to_string(),
            });
        }
        crate::scope::take(&mut session, store, ticket.as_mut())?;
        let status = session.drive()?;
        return Ok(RunEnd {
            run_id: input.run_id.clone(),
            status,
            state: session.into_state(),
        });
    }
    let mut text = definition_in_force(store, &meta, &state)?;
    let mut reloaded = None;
    if let Some(current) = &input.current_definition {
        let sha = RunMeta::sha256_hex(current);
        if sha != state.definition_sha256 {
            if !input.reload {
                return Err(RuntimeError::DefinitionChanged {
                    run_id: input.run_id.clone(),
                });
            }
            text = current.clone();
            reloaded = Some(sha);
        }
    }
    let def = match &reloaded {
        // The one check `dloop validate` runs (the CLI renders its diagnostics before this).
        Some(_) => match dloop_core::validate::check_loop(text.as_bytes()) {
            (Some(parsed), diagnostics) if diagnostics.is_empty() => parsed.def,
            (_, diagnostics) => {
                return Err(RuntimeError::InvalidReload {
                    run_id: input.run_id.clone(),
                    problems: diagnostics.len(),
                    first: diagnostics
                        .first()
                        .map_or_else(|| "unknown error".to_owned(), |d| d.message.clone()),
                });
            }
        },
        None => parse_definition(&input.run_id, &text)?,
    };
    check_runners(&def, &*options.agents)?;
    crate::subloop::check_sub_loops(&def, &options)?;
    if let Some(sha) = &reloaded {
        let current = state.current.clone().unwrap_or_default();
        if input.request.skip_to.is_none() && !def.states.contains_key(&current) {
            return Err(RuntimeError::ReloadMissingState {
                run_id: input.run_id.clone(),
                state: current,
            });
        }
        // Durable before the record that names it.
        run.put_blob(&reloaded_name(sha), text.as_bytes())?;
    }
    let mut events = resume_events(&def, &state, &input.request)?;
    // `run_resumed` first: it closes the dead session at its last record, so the time the run
    // spent stopped is not counted as run time.
    let mut extra = Vec::new();
    if let Some(repair) = &info.repair {
        extra.push(Event::LogRepaired {
            dropped_bytes: repair.dropped_bytes,
            reason: repair.reason.to_string(),
        });
    }
    if let Some(sha) = reloaded {
        extra.push(Event::DefinitionReloaded {
            definition_sha256: sha,
        });
    }
    events.splice(1..1, extra);
    let mut ticket = admit_scope(store, &def, &meta, &options, input)?;
    let mut session = Session::new(&def, run, run_dir, state, options, observer);
    for event in events {
        session.record(event);
    }
    crate::scope::take(&mut session, store, ticket.as_mut())?;
    let status = session.drive()?;
    Ok(RunEnd {
        run_id: input.run_id.clone(),
        status,
        state: session.into_state(),
    })
}

/// Resume takes the scope again, checked before anything is recorded (a refusal leaves the
/// run as it was).
fn admit_scope(
    store: &dyn Store,
    def: &LoopDef,
    meta: &RunMeta,
    options: &SessionOptions,
    input: &ResumeInput,
) -> Result<Option<crate::scope::Ticket>, RuntimeError> {
    crate::scope::admit(
        store,
        def,
        &meta.loop_name,
        &options.project_root,
        input.scope.as_ref().filter(|_| meta.worktree.is_none()),
        &input.run_id,
    )
}

/// Ends a paused, crashed or timed-out run for good.
///
/// # Errors
/// The run is live (stop it first), already finished, or the store failed.
pub fn cancel_run(store: &dyn Store, run_id: &str) -> Result<RunState, RuntimeError> {
    let mut run = store.open_run(run_id)?;
    let (mut state, info) = run.load_state()?;
    crate::reaper::end_leftover_action(run_id);
    if state.status.is_finished() {
        return Err(dloop_core::transition::ResumeError::Finished {
            run_id: run_id.to_owned(),
            status: state.status.as_str(),
        }
        .into());
    }
    let mut events = Vec::new();
    if let Some(repair) = &info.repair {
        events.push(Event::LogRepaired {
            dropped_bytes: repair.dropped_bytes,
            reason: repair.reason.to_string(),
        });
    }
    events.extend(dloop_core::transition::interrupt_in_flight(
        &state, "crashed",
    ));
    events.push(Event::RunCancelled {});
    for record in run.append(&events, now())? {
        state.apply(&record);
    }
    run.save_snapshot(&state)?;
    Ok(state)
}
