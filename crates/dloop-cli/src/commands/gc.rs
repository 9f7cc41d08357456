//! `dloop gc`: delete finished runs (completed, failed, cancelled) whose last record is older
//! than a duration. Never a live, paused, crashed or timed-out run: those can still be resumed.
//!
//! Each run is deleted under its claim (`Store::open_run`, `RunHandle::delete`), so a process
//! that holds it (a resume, a cancel) is never cut off mid-write; such a run is skipped with a
//! warning. Leftovers of a creation or deletion cut short (issue 7, F7) are removed too, unless
//! a process is still at work on them, and so are the scratch folders of replays that died
//! (`crate::scratch`: never a live replay's).

use clap::Args;
use dloop_core::HumanDuration;
use dloop_store::Store;

use crate::commands::status::now;
use crate::commands::{CmdResult, Ctx};
use crate::error::CliError;
use crate::exit::Exit;
use crate::project::Project;
use crate::runs::{load_all, store_error};
use crate::storage::Storage;

/// Delete finished runs (completed, failed, cancelled) older than a duration
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop gc                                 delete finished runs older than 7 days
  dloop gc --older-than 12h --dry-run      list what would go
  dloop gc --all                           every finished run")]
pub(crate) struct GcArgs {
    /// Delete runs whose last record is older than this (e.g. 12h, 30d)
    #[arg(long, value_name = "DUR", default_value = "7d", conflicts_with = "all")]
    pub(crate) older_than: HumanDuration,
    /// Delete every finished run, whatever its age
    #[arg(long)]
    pub(crate) all: bool,
    /// List the runs that would be deleted, and delete nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// Deletes old finished runs; prints the ids deleted (or that would be) on stdout.
pub(crate) fn cmd_gc(ctx: &Ctx, args: GcArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let all = load_all(store)?;
    let leftovers: Vec<String> = all
        .incomplete
        .iter()
        .filter(|i| !i.busy)
        .map(|i| i.name.clone())
        .collect();
    let cutoff = if args.all {
        u64::MAX
    } else {
        now()
            .as_millis()
            .saturating_sub(args.older_than.as_millis())
    };
    let age = if args.all {
        "of any age".to_owned()
    } else {
        format!("older than {}", args.older_than)
    };
    // A finished sub-loop run whose parent has not finished is kept: the parent takes its
    // result from it when it resumes (deleted, the child would be run again from scratch).
    let unfinished: std::collections::BTreeSet<&str> = all
        .runs
        .iter()
        .filter(|info| !info.state.status.is_finished())
        .map(|info| info.id.as_str())
        .collect();
    let mut old: Vec<String> = all
        .runs
        .iter()
        .filter(|info| info.state.status.is_finished() && info.state.last_ts.as_millis() < cutoff)
        .filter(|info| {
            info.state
                .parent
                .as_ref()
                .is_none_or(|p| !unfinished.contains(p.run_id.as_str()))
        })
        .map(|info| info.id.clone())
        .collect();
    old.sort();
    // Scratch folders of plain replays killed before they could remove them (never a live
    // replay's: `crate::scratch`).
    let scratch = storage.sweep_scratch(!args.dry_run)?;
    if !scratch.is_empty() {
        let names: Vec<String> = scratch
            .iter()
            .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        ctx.ui.status(&format!(
            "{} {} stale replay scratch {}: {}\n",
            if args.dry_run {
                "would remove"
            } else {
                "removed"
            },
            names.len(),
            if names.len() == 1 {
                "folder"
            } else {
                "folders"
            },
            names.join(", ")
        ));
    }
    if args.dry_run {
        ctx.ui.print(&lines(&old))?;
        if !leftovers.is_empty() {
            ctx.ui.status(&format!(
                "would remove {} incomplete run {}: {}\n",
                leftovers.len(),
                if leftovers.len() == 1 {
                    "folder"
                } else {
                    "folders"
                },
                leftovers.join(", ")
            ));
        }
        ctx.ui.status(&format!(
            "would delete {} finished {} {age}\n",
            old.len(),
            if old.len() == 1 { "run" } else { "runs" },
        ));
        return Ok(Exit::Ok);
    }
    for name in &leftovers {
        match store.remove_incomplete(name) {
            Ok(true) => ctx.ui.status(&format!(
                "note: removed {name}, an incomplete run folder (a creation or deletion cut \
                 short)\n"
            )),
            Ok(false) => {}
            Err(e) => ctx.ui.status(&format!(
                "warning: cannot remove {name}: {}",
                store_error(e, name).report()
            )),
        }
    }
    let mut deleted = Vec::new();
    for id in old {
        match delete_run(store, &id) {
            Ok(true) => {
                ctx.ui.print(&format!("{id}\n"))?;
                deleted.push(id);
            }
            Ok(false) => ctx.ui.status(&format!(
                "warning: skipped run {id}: it is no longer finished\n"
            )),
            Err(err) => ctx
                .ui
                .status(&format!("warning: skipped run {id}: {}", err.report())),
        }
    }
    ctx.ui.status(&format!(
        "deleted {} finished {} {age}\n",
        deleted.len(),
        if deleted.len() == 1 { "run" } else { "runs" },
    ));
    Ok(Exit::Ok)
}

/// Deletes run `id` if, under its lock, it is still finished. Returns whether it was deleted.
/// Errors: the run is live (`AlreadyLive`) or a file cannot be removed.
pub(crate) fn delete_run(store: &dyn Store, id: &str) -> Result<bool, CliError> {
    let mut run = store.open_run(id).map_err(|e| store_error(e, id))?;
    // Invariant: while `run` holds the claim nobody appends, so this check stays true until the
    // run is gone.
    let (state, _) = run.load_state().map_err(|e| store_error(e, id))?;
    if !state.status.is_finished() {
        return Ok(false);
    }
    run.delete().map_err(|e| store_error(e, id))?;
    Ok(true)
}

fn lines(ids: &[String]) -> String {
    ids.iter().map(|id| format!("{id}\n")).collect()
}
