//! `dloop inspect`: one run in detail: status, state, step, context, captures, per-state
//! counters, last error, and what to do next.

use clap::Args;

use crate::commands::status::now;
use crate::commands::{CmdResult, Ctx};
use crate::exit::Exit;
use crate::project::Project;
use crate::render::run_json::RunJson;
use crate::render::{json, run_view};
use crate::runs::{load_info, load_summary, resolve_newest};
use crate::storage::Storage;

/// Show one run: status, state, step, context, captures, per-state counts, last error
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop inspect fix-tests                  the newest run: status, state, captures, outputs, agents
  dloop inspect 3f2a --json | jq .states")]
pub(crate) struct InspectArgs {
    /// The run: an id, a unique id prefix, or a loop name (its newest run)
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::run_ids))]
    pub(crate) run: String,
    /// Print the run as one JSON object (see the README)
    #[arg(long)]
    pub(crate) json: bool,
}

/// Shows a run.
pub(crate) fn cmd_inspect(ctx: &Ctx, args: InspectArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let id = resolve_newest(store, &args.run)?;
    let info = load_info(store, &id)?;
    // A child that cannot be read is shown as such; it never hides its parent.
    let children: std::collections::BTreeMap<String, crate::runs::RunInfo> = info
        .state
        .children
        .iter()
        .filter_map(|c| load_summary(store, &c.run_id).ok())
        .map(|child| (child.id.clone(), child))
        .collect();
    if args.json {
        let mut json = RunJson::from_info(&info);
        for child in &mut json.children {
            child.status = children
                .get(&child.run_id)
                .map(crate::runs::RunInfo::status);
        }
        ctx.ui.print(&json::to_pretty(&json))?;
    } else {
        ctx.ui
            .print(&run_view::inspect(&info, &children, now(), ctx.ui.color))?;
    }
    Ok(Exit::Ok)
}
