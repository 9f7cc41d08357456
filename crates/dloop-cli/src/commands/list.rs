//! `dloop list`: the loops of `.loops/`, sorted by name. An invalid loop is listed with a
//! marker; it never hides the others.

use clap::Args;

use super::{CmdResult, Ctx};
use crate::exit::Exit;
use crate::load::load_all;
use crate::project::Project;
use crate::render::{human, json};

/// List the loops in .loops/: name, number of states, description.
///
/// Invalid loops are listed too, marked with their first problem (see `dloop validate`).
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print a JSON array of {name, file, description, states, valid, problems, error}.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Lists every loop; exit 0 even when some are invalid (the listing is the result).
pub(crate) fn cmd_list(ctx: &Ctx, args: ListArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let loaded = load_all(project.loop_files()?, &ctx.cwd, Some(&project));
    let rows: Vec<json::LoopJson> = loaded
        .iter()
        .map(|l| {
            let def = l.parsed.as_ref().map(|p| &p.def);
            json::LoopJson {
                name: l.file.name.clone(),
                file: l.display.clone(),
                description: def.and_then(|d| d.description.clone()),
                states: def.map(|d| d.states.len()),
                valid: l.is_valid(),
                problems: l.diagnostics.len(),
                error: l.diagnostics.first().map(|d| d.message.clone()),
            }
        })
        .collect();
    if args.json {
        ctx.ui.print(&json::to_pretty(&rows))?;
    } else {
        ctx.ui.print(&human::list(&rows, ctx.ui.color))?;
    }
    Ok(Exit::Ok)
}
