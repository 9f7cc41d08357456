//! `dloop history`: runs that have ended (completed, failed, cancelled, timed out), newest
//! first by the time they ended.
//!
//! `timed_out` runs are listed here as well as in `status`: their session ended with an outcome
//! worth seeing in the history, even though a larger `--timeout` can resume them.

use clap::Args;
use dloop_core::state::RunStatus;

use crate::commands::{CmdResult, Ctx};
use crate::error::CliError;
use crate::exit::Exit;
use crate::project::Project;
use crate::render::run_json::HistoryRowJson;
use crate::render::{json, run_view};
use crate::runs::{RunInfo, load_summary, run_ids};
use crate::storage::Storage;

/// Show finished runs, newest first: outcome, steps, duration, when they ended
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// Only this loop's runs
    #[arg(value_name = "LOOP", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::loop_names))]
    pub(crate) loop_name: Option<String>,
    /// Show at most N runs (1 or more)
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) limit: u64,
    /// Print a JSON array of runs (the `inspect --json` keys, then `outcome`, `finished_at`)
    #[arg(long)]
    pub(crate) json: bool,
}

/// Whether a run belongs in the history.
pub(crate) fn has_ended(info: &RunInfo) -> bool {
    info.state.status.is_finished() || info.state.status == RunStatus::TimedOut
}

/// Lists ended runs.
pub(crate) fn cmd_history(ctx: &Ctx, args: HistoryArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let ids = run_ids(store)?;
    if let Some(name) = &args.loop_name {
        let has_runs = ids.iter().any(|id| id.loop_name() == name);
        if !has_runs && project.find(name).is_none() {
            let known: Vec<String> = project
                .loop_files()
                .unwrap_or_default()
                .into_iter()
                .map(|f| f.name)
                .collect();
            let mut err = CliError::usage(format!("no loop named `{name}` and no runs of one"));
            if let Some(close) =
                dloop_core::diagnostic::suggest(name, known.iter().map(String::as_str))
            {
                err = err.with_hint(format!("did you mean `{close}`?"));
            }
            return Err(err);
        }
    }
    let mut runs = Vec::new();
    for id in ids {
        if args
            .loop_name
            .as_deref()
            .is_some_and(|name| id.loop_name() != name)
        {
            continue;
        }
        match load_summary(store, id.as_str()) {
            Ok(info) if has_ended(&info) => runs.push(info),
            Ok(_) => {}
            Err(err) => ctx.ui.status(&format!(
                "warning: cannot read run {}: {}",
                id.as_str(),
                err.report()
            )),
        }
    }
    runs.sort_by(|a, b| (b.state.last_ts, &b.id).cmp(&(a.state.last_ts, &a.id)));
    runs.truncate(usize::try_from(args.limit).unwrap_or(usize::MAX));
    if args.json {
        let rows: Vec<HistoryRowJson> = runs.iter().map(HistoryRowJson::from_info).collect();
        ctx.ui.print(&json::to_pretty(&rows))?;
    } else {
        ctx.ui.print(&run_view::history(&runs, ctx.ui.color))?;
    }
    Ok(Exit::Ok)
}
