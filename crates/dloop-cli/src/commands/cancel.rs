//! `dloop cancel`: end a paused, crashed or timed-out run for good (status `cancelled`).

use clap::Args;
use dloop_runtime::runs::cancel_run;

use crate::commands::session::runtime_error;
use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::project::Project;
use crate::runs::{RunInfo, resolve};
use crate::storage::Storage;

/// End a paused or crashed run for good (status cancelled)
#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The run: an id, a unique id prefix, or a loop name (its resumable run)
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::run_ids))]
    pub(crate) run: String,
}

/// Cancels a run.
pub(crate) fn cmd_cancel(ctx: &Ctx, args: CancelArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let run_id = resolve(store, &args.run, "resumable", &|info: &RunInfo| {
        info.is_resumable()
    })?;
    let info = crate::runs::load_summary(store, &run_id)?;
    if info.state.status.is_finished() {
        return Err(CliError::new(
            ErrorKind::Refused,
            format!(
                "run {run_id} has already ended ({}): only a paused, crashed or timed-out run can be cancelled",
                info.status()
            ),
        )
        .with_hint(format!("`dloop rm {run_id}` deletes it")));
    }
    if store.is_live(&run_id).unwrap_or(false)
        && store
            .request_stop(&run_id, false)
            .map_err(|e| crate::runs::store_error(e, &run_id))?
    {
        // A run a worker holds: ask it to let go (through the store), then cancel it here.
        ctx.ui.status(&format!(
            "asked the holder of run {run_id} to stop it; waiting for it to let go\n"
        ));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while store.is_live(&run_id).unwrap_or(false) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let state = cancel_run(store, &run_id).map_err(|e| runtime_error(e, Some(&run_id)))?;
    ctx.ui.status(&format!("cancelled run {run_id}\n"));
    cancel_children(ctx, store, &state);
    Ok(Exit::Ok)
}

/// Cancels the unfinished sub-loop runs of a cancelled run (and theirs): nothing would ever
/// continue them. A child that cannot be cancelled (live elsewhere, unreadable) is a warning.
/// Only a run's own children are: a fork's history names its source's children (the steps
/// it copied took their results), which belong to the source.
fn cancel_children(ctx: &Ctx, store: &dyn dloop_store::Store, state: &dloop_core::RunState) {
    let children_of = |parent: &dloop_core::RunState| -> Vec<(String, String)> {
        parent
            .children
            .iter()
            .map(|c| (parent.run_id.clone(), c.run_id.clone()))
            .collect()
    };
    let mut pending = children_of(state);
    while let Some((parent, id)) = pending.pop() {
        let skip = store.load_state(&id).is_ok_and(|(child, _)| {
            child.status.is_finished() || child.parent.as_ref().is_none_or(|p| p.run_id != parent)
        });
        if skip {
            continue;
        }
        match cancel_run(store, &id) {
            Ok(child) => {
                ctx.ui.status(&format!("cancelled its sub-loop run {id}\n"));
                pending.extend(children_of(&child));
            }
            Err(err) => ctx.ui.warn(&format!(
                "warning: sub-loop run {id} was not cancelled: {err}\n"
            )),
        }
    }
}
