//! `dloop worker`: claim runs from a PostgreSQL store and drive them, N at a time, with the
//! same runtime as a local run, the actions running in this machine's checkout of the project.
//!
//! Each run is claimed with a lease (`dloop_store_pg::queue::claim`); the run's handle renews
//! it from a heartbeat thread and fences every write with its token. When the heartbeat learns
//! that the lease is lost (this worker was paused or cut off past the TTL and another worker
//! took the run), the session's stop flag is raised to end the action at once; the session's
//! next write is refused and the run is dropped without touching it. A stop request from `dloop
//! stop` arrives the same way and pauses the run. SIGTERM (or Ctrl-C) stops every session (the
//! actions are interrupted, recorded as such) and hands each run back to the queue at once;
//! SIGUSR1 lets each finish its current action first.
//!
//! What became of a run is recorded with its lease released in one statement
//! (`queue::settle`): ended runs are `done`, runs paused for a person (stopped, out of steps, a
//! decision to make) `held`, runs this worker let go of on shutdown `queued` again. A run whose
//! store failed (the database unreachable past the retries) is not settled: its lease expires
//! and another worker continues it.
//!
//! Sub-loops (`loop:` states): children resolve from the loops kept with the claimed run at
//! submit (its bundle, `crate::subloops::BundledLoops`), never from this checkout. A child is
//! created in the same store under a lease of this worker's (same holder; its handle's own
//! heartbeat renews it while the child runs, and its lease news raise the parent session's stop
//! flag), and released when the child ends or pauses: a child has no queue state (`queue` NULL),
//! so no claim ever takes it; it runs only under its parent's driver, and its end or pause
//! settles with the parent's (`done`, `held`). A worker that claims a parent a dead worker held
//! first ends the orphaned worker leases on the parent's current children
//! (`queue::end_orphan_lease`), whose heartbeats may have outlived the parent's by up to a TTL,
//! so the resume continues each child from its own log at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use clap::Args;
use dloop_core::HumanDuration;
use dloop_core::transition::ResumeError;
use dloop_runtime::driver::SessionOptions;
use dloop_runtime::observer::Silent;
use dloop_runtime::process::{StopFlag, StopLevel};
use dloop_runtime::runs::{ResumeInput, resume_run};
use dloop_runtime::subloop::MAX_DEPTH;
use dloop_runtime::{RuntimeError, RuntimeErrorKind};
use dloop_store::StoreErrorKind;
use dloop_store_pg::queue::{self, Claimed, Settled};
use dloop_store_pg::{Holder, LeaseNews, PgStore};

use crate::commands::{CmdResult, Ctx};
use crate::error::CliError;
use crate::exit::Exit;
use crate::project::Project;
use crate::render::Ui;
use crate::storage::Storage;
use crate::subloops::BundledLoops;

/// Claim queued runs from a PostgreSQL store and drive them
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop worker --store postgres://db.internal/dloop -j 4
  dloop worker --project ~/checkouts/app --lease-ttl 10s
  dloop worker --exit-when-idle                 drain the queue, then exit (DLOOP_STORE set)")]
pub(crate) struct WorkerArgs {
    /// Runs driven at once
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) jobs: u64,
    /// This machine's checkout of the project: actions run there (default: the project here)
    #[arg(long, value_name = "DIR")]
    pub(crate) project: Option<PathBuf>,
    /// How long a lease lasts without a heartbeat: a dead worker's runs move on after this
    #[arg(long, value_name = "DUR", default_value = "30s")]
    pub(crate) lease_ttl: HumanDuration,
    /// How often an idle worker looks for queued runs
    #[arg(long, value_name = "DUR", default_value = "500ms")]
    pub(crate) poll: HumanDuration,
    /// This worker's name in leases and `status` (default: host:pid)
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Exit once nothing is queued and nothing runs here
    #[arg(long)]
    pub(crate) exit_when_idle: bool,
}

/// A run being driven on its own thread.
struct Slot {
    flag: Arc<StopFlag>,
    thread: JoinHandle<()>,
}

/// What every run thread shares.
#[derive(Clone)]
struct Shared {
    project: Project,
    agents: Arc<dloop_runtime::actions::agents::Agents>,
    shutdown: Arc<StopFlag>,
    ui: Ui,
    done: mpsc::Sender<()>,
}

/// Runs the worker until SIGTERM (or, with --exit-when-idle, until the queue is empty).
pub(crate) fn cmd_worker(ctx: &Ctx, args: WorkerArgs) -> CmdResult {
    let dir = args
        .project
        .as_ref()
        .map_or_else(|| ctx.cwd.clone(), |d| ctx.cwd.join(d));
    let project = Project::require(&dir)?;
    let url = crate::storage::store_url(&project)?
        .filter(|u| crate::storage::is_pg_url(u))
        .ok_or_else(|| {
            CliError::usage("dloop worker needs a PostgreSQL store")
                .with_hint("give --store postgres://..., or set DLOOP_STORE")
        })?;
    let mut holder = Holder::this_process("worker");
    if let Some(name) = &args.name {
        holder.owner.clone_from(name);
    }
    let base = crate::storage::connect_pg(&url)?
        .with_lease_ttl(args.lease_ttl.0)
        .with_holder(holder.clone())
        .with_release_on_drop(false);
    let shutdown = Arc::new(StopFlag::default());
    dloop_runtime::signals::install(Arc::clone(&shutdown), Arc::default())
        .map_err(|e| CliError::io("installing signal handlers", e))?;
    let (done, finished) = mpsc::channel();
    let shared = Shared {
        agents: Arc::new(crate::commands::session::agents(ctx, &project)?),
        project,
        shutdown: Arc::clone(&shutdown),
        ui: ctx.ui,
        done,
    };
    ctx.ui.status(&format!(
        "worker {}: {} slot(s), lease {}\n",
        holder.owner, args.jobs, args.lease_ttl
    ));
    let mut slots: Vec<Slot> = Vec::new();
    loop {
        let (over, live): (Vec<Slot>, Vec<Slot>) =
            slots.into_iter().partition(|s| s.thread.is_finished());
        slots = live;
        for slot in over {
            drop(slot.thread.join());
        }
        let level = shutdown.level();
        if level != StopLevel::None {
            // Shutting down: every session stops (or drains) and hands its run back.
            for slot in &slots {
                slot.flag.raise(level);
            }
            if slots.is_empty() {
                break;
            }
            let _ = finished.recv_timeout(std::time::Duration::from_millis(50));
            continue;
        }
        let free = args.jobs as usize - slots.len();
        let claimed = if free > 0 {
            queue::claim(&base, free, &holder).unwrap_or_else(|e| {
                ctx.ui.warn(&format!("warning: cannot claim runs: {e}\n"));
                Vec::new()
            })
        } else {
            Vec::new()
        };
        if claimed.is_empty() && slots.is_empty() && args.exit_when_idle {
            break;
        }
        let idle = claimed.is_empty();
        for claim in claimed {
            match start(&base, &shared, claim) {
                Ok(slot) => slots.push(slot),
                Err(e) => ctx.ui.warn(&format!("warning: {e}\n")),
            }
        }
        if idle {
            // Woken early when a run ends (a slot is free) or a signal's handler ran.
            let _ = finished.recv_timeout(args.poll.0);
        }
    }
    ctx.ui
        .status(&format!("worker {}: stopped\n", holder.owner));
    Ok(Exit::Ok)
}

/// Starts driving claimed run `claim` on a thread of its own, with its own connection.
fn start(base: &PgStore, shared: &Shared, claim: Claimed) -> Result<Slot, String> {
    let flag = Arc::new(StopFlag::default());
    let user_stop = Arc::new(AtomicBool::new(false));
    match claim.stop_requested.as_deref() {
        Some("drain") => flag.raise(StopLevel::Drain),
        Some(_) => flag.raise(StopLevel::Stop),
        None => {}
    }
    if claim.stop_requested.is_some() {
        user_stop.store(true, Ordering::SeqCst);
    }
    let (watch_flag, watch_stop) = (Arc::clone(&flag), Arc::clone(&user_stop));
    let store = base
        .reconnect()
        .map_err(|e| format!("cannot connect for run {}: {e}", claim.id))?
        .with_watch(Arc::new(move |_id, news| match news {
            // Another worker has the run: end the action now; nothing more of ours lands.
            LeaseNews::Lost => watch_flag.raise(StopLevel::Now),
            LeaseNews::Stop { drain } => {
                watch_stop.store(true, Ordering::SeqCst);
                watch_flag.raise(if drain {
                    StopLevel::Drain
                } else {
                    StopLevel::Stop
                });
            }
        }));
    store.adopt(&claim.id, claim.token);
    let shared = shared.clone();
    let session_flag = Arc::clone(&flag);
    let id = claim.id.clone();
    let thread = std::thread::Builder::new()
        .name(format!("run-{id}"))
        .spawn(move || {
            drive(store, &shared, &claim, session_flag, &user_stop);
            let _ = shared.done.send(());
        })
        .map_err(|e| format!("cannot start a thread for run {id}: {e}"))?;
    Ok(Slot { flag, thread })
}

/// The sub-loop host of claimed run `id`: its bundle (see `crate::subloops`), children in
/// `children`. The orphaned leases a dead worker left on the run's current sub-loop runs are
/// ended first, so that the resume continues them from their own logs at once.
fn sub_loop_host(storage: &Storage, id: &str, children: Storage) -> Result<BundledLoops, String> {
    let store = storage.store();
    let bundle = crate::subloops::stored_bundle(store, id)?;
    if let Some(pg) = storage.pg() {
        let mut parent = id.to_owned();
        // Bounded: a chain is at most MAX_DEPTH long, and a tampered log must not loop.
        for _ in 0..MAX_DEPTH {
            let (state, _) = store.load_state(&parent).map_err(|e| e.to_string())?;
            let Some(child) = state.child_of_step(state.step).map(|c| c.run_id.clone()) else {
                break;
            };
            let own = store
                .load_state(&child)
                .is_ok_and(|(c, _)| c.parent.is_some_and(|p| p.run_id == parent));
            if !own {
                break;
            }
            queue::end_orphan_lease(pg, &child).map_err(|e| e.to_string())?;
            parent = child;
        }
    }
    Ok(BundledLoops {
        bundle,
        storage: children,
    })
}

/// Drives one claimed run to its end or pause, then settles it.
fn drive(
    store: PgStore,
    shared: &Shared,
    claim: &Claimed,
    flag: Arc<StopFlag>,
    user_stop: &AtomicBool,
) {
    let children = match store.reconnect() {
        // Children's handles release their leases when dropped: they have no queue state
        // to settle, and a paused child must not block a `dloop resume` of its parent.
        Ok(pg) => Storage::for_worker(&shared.project, pg.with_release_on_drop(true)),
        Err(e) => {
            // Left to the lease's expiry and the next worker.
            shared.ui.warn(&format!(
                "{}: dropped: cannot connect for its sub-loops: {e}\n",
                claim.id
            ));
            return;
        }
    };
    let storage = Storage::for_worker(&shared.project, store);
    let host = match sub_loop_host(&storage, &claim.id, children) {
        Ok(host) => host,
        Err(e) => {
            shared.ui.warn(&format!("{}: held: {e}\n", claim.id));
            if let Some(pg) = storage.pg()
                && let Err(e) = queue::settle(pg, &claim.id, claim.token, Settled::Held)
            {
                shared
                    .ui
                    .warn(&format!("{}: cannot record its outcome: {e}\n", claim.id));
            }
            return;
        }
    };
    let mut options = SessionOptions::new(shared.project.root.clone());
    options.sub_loops = Some(Arc::new(host));
    options.stop = flag;
    options.agents =
        Arc::clone(&shared.agents) as Arc<dyn dloop_runtime::agent_runners::AgentRunners>;
    if let Some(ms) = std::env::var("DLOOP_KILL_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.kill_grace = std::time::Duration::from_millis(ms);
    }
    let input = ResumeInput {
        run_id: claim.id.clone(),
        ..ResumeInput::default()
    };
    let local_dir = |id: &str| storage.local_dir(id);
    let result = resume_run(storage.store(), &local_dir, &input, options, &mut Silent);
    let id = &claim.id;
    let how = match &result {
        Ok(end) if end.status.is_finished() => Some(Settled::Done),
        Ok(_)
            if shared.shutdown.level() != StopLevel::None && !user_stop.load(Ordering::SeqCst) =>
        {
            Some(Settled::Requeued)
        }
        Ok(_) => Some(Settled::Held),
        Err(RuntimeError::Resume(ResumeError::Finished { .. })) => Some(Settled::Done),
        // Lost the lease, or the database is out of reach: leave the run to the lease's
        // expiry and the next worker.
        Err(e)
            if matches!(
                e.kind(),
                RuntimeErrorKind::Store(StoreErrorKind::ClaimLost | StoreErrorKind::Io)
            ) =>
        {
            None
        }
        Err(_) => Some(Settled::Held),
    };
    match &result {
        Ok(end) => shared
            .ui
            .status(&format!("{id}: {}\n", end.state.status.as_str())),
        // Dropped: left to its lease's expiry; held: a person must look at it.
        Err(e) if how.is_none() => shared.ui.warn(&format!("{id}: dropped: {e}\n")),
        Err(e) => shared.ui.warn(&format!("{id}: held: {e}\n")),
    }
    if let (Some(how), Some(pg)) = (how, storage.pg())
        && let Err(e) = queue::settle(pg, id, claim.token, how)
    {
        shared
            .ui
            .warn(&format!("{id}: cannot record its outcome: {e}\n"));
    }
}
