//! `dloop status`: live and resumable runs (running, paused, crashed, timed out), newest
//! first; `--all` adds the finished ones.

use clap::Args;
use dloop_core::Timestamp;

use crate::commands::{CmdResult, Ctx};
use crate::exit::Exit;
use crate::project::Project;
use crate::render::run_json::RunJson;
use crate::render::{json, run_view};
use crate::runs::{RunInfo, load_all};
use crate::storage::Storage;

/// Show live and resumable runs (running, paused, crashed, timed out), newest first
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop status                             live, waiting and resumable runs
  dloop status --all --json                every run, as JSON")]
pub(crate) struct StatusArgs {
    /// Also show finished runs (completed, failed, cancelled)
    #[arg(long)]
    pub(crate) all: bool,
    /// Print a JSON array of runs (the `inspect --json` shape)
    #[arg(long)]
    pub(crate) json: bool,
}

/// What `status` shows: the runs, newest first, and the time it was taken.
#[derive(Debug)]
pub(crate) struct StatusReport {
    /// The runs, newest first.
    pub(crate) runs: Vec<RunInfo>,
    /// Now, for the elapsed time of live runs.
    pub(crate) now: Timestamp,
}

/// Lists runs; unreadable runs are reported on stderr and do not hide the others.
pub(crate) fn cmd_status(ctx: &Ctx, args: StatusArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let all = load_all(store)?;
    for (id, err) in &all.unreadable {
        ctx.ui
            .status(&format!("warning: cannot read run {id}: {}", err.report()));
    }
    if !all.incomplete.is_empty() {
        ctx.ui.status(&format!(
            "note: ignored {} incomplete run {} (a creation or deletion cut short): {}; \
             `dloop gc` removes them\n",
            all.incomplete.len(),
            if all.incomplete.len() == 1 {
                "folder"
            } else {
                "folders"
            },
            all.incomplete
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut runs: Vec<RunInfo> = all
        .runs
        .into_iter()
        .filter(|info| args.all || !info.state.status.is_finished())
        .collect();
    sort_newest_first(&mut runs);
    let runs = nest_children(runs);
    let report = StatusReport { runs, now: now() };
    if args.json {
        let rows: Vec<RunJson> = report.runs.iter().map(RunJson::from_info).collect();
        ctx.ui.print(&json::to_pretty(&rows))?;
    } else {
        ctx.ui.print(&run_view::status(
            &report.runs,
            args.all,
            report.now,
            ctx.ui.color,
        ))?;
    }
    Ok(Exit::Ok)
}

/// Newest start first; the id breaks ties so the order is stable.
pub(crate) fn sort_newest_first(runs: &mut [RunInfo]) {
    runs.sort_by(|a, b| (b.state.started_at, &b.id).cmp(&(a.state.started_at, &a.id)));
}

/// Puts each sub-loop run right after its parent when the parent is listed (a parent's children
/// in the order they started, theirs after each); every other run keeps its place. A run is
/// never dropped: one whose chain of parents does not reach a listed top (a log edited into
/// a loop of parents) comes last.
pub(crate) fn nest_children(runs: Vec<RunInfo>) -> Vec<RunInfo> {
    use std::collections::{BTreeMap, BTreeSet};
    let ids: BTreeSet<String> = runs.iter().map(|r| r.id.clone()).collect();
    let mut tops = Vec::new();
    let mut by_parent: BTreeMap<String, Vec<RunInfo>> = BTreeMap::new();
    for run in runs {
        match run
            .state
            .parent
            .as_ref()
            .filter(|p| ids.contains(&p.run_id))
        {
            Some(parent) => by_parent
                .entry(parent.run_id.clone())
                .or_default()
                .push(run),
            None => tops.push(run),
        }
    }
    for children in by_parent.values_mut() {
        children.sort_by(|a, b| (a.state.started_at, &a.id).cmp(&(b.state.started_at, &b.id)));
    }
    let mut out = Vec::with_capacity(ids.len());
    let mut stack: Vec<RunInfo> = tops.into_iter().rev().collect();
    while let Some(run) = stack.pop() {
        if let Some(children) = by_parent.remove(&run.id) {
            stack.extend(children.into_iter().rev());
        }
        out.push(run);
    }
    out.extend(by_parent.into_values().flatten());
    out
}

/// How deep each run of `runs` (in [`nest_children`]'s order) is drawn: 0 for a run whose
/// parent is not listed before it, its parent's depth + 1 otherwise.
pub(crate) fn nesting_levels(runs: &[RunInfo]) -> Vec<usize> {
    let mut levels: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    runs.iter()
        .map(|info| {
            let level = info
                .state
                .parent
                .as_ref()
                .and_then(|p| levels.get(p.run_id.as_str()))
                .map_or(0, |l| l + 1);
            levels.insert(&info.id, level);
            level
        })
        .collect()
}

/// The current time.
pub(crate) fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Timestamp::from_millis(ms)
}
