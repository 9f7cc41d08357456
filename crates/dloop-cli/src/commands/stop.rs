//! `dloop stop`: ask a live run to stop (it records the stop and exits paused), let it finish
//! its current action first (`--drain`), or kill it (`--force`; the run is then `crashed`).

use clap::Args;
use dloop_runtime::signals::signal_process;

use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::project::Project;
use crate::runs::{RunInfo, resolve, store_error};
use crate::storage::Storage;

/// Stop a live run; it pauses and `dloop resume` continues it
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop stop fix-tests                     end the running action and pause (resume continues)
  dloop stop fix-tests --drain             let the current action finish, then pause
  dloop stop 3f2a --force                  SIGKILL the runner; the run is crashed and resumable")]
pub(crate) struct StopArgs {
    /// The run: an id, a unique id prefix, or a loop name (its live run)
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::run_ids))]
    pub(crate) run: String,
    /// Let the action in flight finish, then pause
    #[arg(long, conflicts_with = "force")]
    pub(crate) drain: bool,
    /// Kill the runner and its action now (SIGKILL); the run becomes `crashed`, still resumable
    #[arg(long)]
    pub(crate) force: bool,
}

/// Signals a live run.
pub(crate) fn cmd_stop(ctx: &Ctx, args: StopArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let run_id = resolve(store, &args.run, "live", &|info: &RunInfo| info.live)?;
    // A run whose log has its end is not stopped, even while its process still holds the lock
    // for its last moments (snapshot, exit): signalling it then would reach a process that
    // has nothing left to stop, or, once it is gone, whatever reuses its pid.
    let info = crate::runs::load_summary(store, &run_id)?;
    if info.state.status.is_finished() {
        return Err(CliError::new(
            ErrorKind::Refused,
            format!(
                "run {run_id} has already ended ({}); there is nothing to stop",
                info.status()
            ),
        ));
    }
    if !store.is_live(&run_id).unwrap_or(false) {
        return Err(
            CliError::new(ErrorKind::Refused, format!("run {run_id} is not live")).with_hint(
                format!("`dloop resume {run_id}` continues it; `dloop cancel {run_id}` ends it"),
            ),
        );
    }
    // A holder a signal cannot reach (a worker, or a run on another machine) is asked through
    // the store; it reads the request at its next heartbeat.
    if store
        .request_stop(&run_id, args.drain)
        .map_err(|e| store_error(e, &run_id))?
    {
        let force = if args.force {
            " (--force cannot kill a process on another machine: it stops like a plain stop)"
        } else {
            ""
        };
        let when = if args.drain {
            "after its current action"
        } else {
            "at its holder's next heartbeat"
        };
        ctx.ui
            .status(&format!("asked run {run_id} to stop {when}{force}\n"));
        return Ok(Exit::Ok);
    }
    let info = store.holder(&run_id).map_err(|e| store_error(e, &run_id))?;
    let Some(pid) = info.map(|i| i.pid as i32).filter(|pid| *pid > 1) else {
        return Err(CliError::new(
            ErrorKind::Io,
            format!("run {run_id} is live but its lock file names no process"),
        ));
    };
    let signal = if args.force {
        libc::SIGKILL
    } else if args.drain {
        libc::SIGUSR1
    } else {
        libc::SIGTERM
    };
    signal_process(pid, signal)
        .map_err(|e| CliError::io(format!("signalling run {run_id} (pid {pid})"), e))?;
    if args.force {
        // The runner cannot end its action now; end the action's process group for it.
        wait_gone(store, &run_id);
        dloop_runtime::reaper::end_leftover_action(&run_id);
        end_descendants_actions(store, &run_id);
        ctx.ui.status(&format!(
            "killed run {run_id}; it is crashed and `dloop resume {run_id}` continues it\n"
        ));
    } else if args.drain {
        ctx.ui.status(&format!(
            "run {run_id} will pause after its current action\n"
        ));
    } else {
        ctx.ui.status(&format!("asked run {run_id} to stop\n"));
    }
    Ok(Exit::Ok)
}

fn wait_gone(store: &dyn dloop_store::Store, run_id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.is_live(run_id).unwrap_or(false) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Ends what the actions of `run_id`'s unfinished sub-loop runs (and theirs) left running: one
/// process drives a parent and its children, so the SIGKILL that ended the parent ended their
/// driver too, and a parent's own action is its child run (no process of its own).
fn end_descendants_actions(store: &dyn dloop_store::Store, run_id: &str) {
    let children = |id: &str| -> Vec<(String, String)> {
        store
            .load_state(id)
            .map(|(state, _)| {
                state
                    .children
                    .iter()
                    .map(|c| (id.to_owned(), c.run_id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut pending = children(run_id);
    // The seen set bounds the walk even when a tampered log makes a cycle.
    let mut seen = std::collections::BTreeSet::new();
    while let Some((parent, id)) = pending.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        // Only the run's own children: a fork's history names its source's, which another
        // process may be driving now.
        let own_and_unfinished = store.load_state(&id).is_ok_and(|(state, _)| {
            !state.status.is_finished() && state.parent.is_some_and(|p| p.run_id == parent)
        });
        if own_and_unfinished {
            dloop_runtime::reaper::end_leftover_action(&id);
            pending.extend(children(&id));
        }
    }
}
