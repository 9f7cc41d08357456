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
fn cancel_children(ctx: &Ctx, store: &dyn dloop_store::Store, state: &dloop_core::RunState) {
    let mut pending: Vec<String> = state.children.iter().map(|c| c.run_id.clone()).collect();
    while let Some(id) = pending.pop() {
        let finished = store
            .load_state(&id)
            .is_ok_and(|(child, _)| child.status.is_finished());
        if finished {
            continue;
        }
        match cancel_run(store, &id) {
            Ok(child) => {
                ctx.ui.status(&format!("cancelled its sub-loop run {id}\n"));
                pending.extend(child.children.iter().map(|c| c.run_id.clone()));
            }
            Err(err) => ctx.ui.warn(&format!(
                "warning: sub-loop run {id} was not cancelled: {err}\n"
            )),
        }
    }
}
