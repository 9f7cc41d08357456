//! `dloop validate [LOOP...]`: check loop files before anything runs.

use clap::Args;

use super::{CmdResult, Ctx};
use crate::exit::Exit;
use crate::load::load_all;
use crate::project::{Project, resolve_loop};
use crate::render::{human, json};

/// Check loop files: YAML syntax, unknown fields, routes, reachability, context keys,
/// sub-loop cycles.
///
/// With no LOOP, checks every loop in .loops/. Exit 0 when all are valid, 2 on any problem.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop validate                           every loop in .loops/
  dloop validate fix-tests --json          one loop's problems as JSON")]
pub(crate) struct ValidateArgs {
    /// Loop names (from .loops/) or paths to .yaml/.yml files; default: every loop in .loops/.
    #[arg(value_name = "LOOP", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::loop_names))]
    pub(crate) loops: Vec<String>,
    /// Print the problems as a JSON array of {file, line, column, message, help}.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Validates the named loops (or all) and prints every problem.
pub(crate) fn cmd_validate(ctx: &Ctx, args: ValidateArgs) -> CmdResult {
    let project = Project::discover(&ctx.cwd);
    let files = if args.loops.is_empty() {
        Project::require(&ctx.cwd)?.loop_files()?
    } else {
        args.loops
            .iter()
            .map(|arg| resolve_loop(arg, &ctx.cwd, project.as_ref()))
            .collect::<Result<Vec<_>, _>>()?
    };
    let loaded = load_all(files, &ctx.cwd, project.as_ref());
    if args.json {
        let problems: Vec<json::ProblemJson> = loaded
            .iter()
            .flat_map(|l| {
                l.diagnostics.iter().map(|d| json::ProblemJson {
                    file: l.display.clone(),
                    line: d.span.map(|s| s.line),
                    column: d.span.map(|s| s.column),
                    message: d.message.clone(),
                    help: d.help.clone(),
                })
            })
            .collect();
        ctx.ui.print(&json::to_pretty(&problems))?;
    } else {
        ctx.ui.print(&human::validate(&loaded, ctx.ui.color))?;
    }
    Ok(if loaded.iter().all(|l| l.is_valid()) {
        Exit::Ok
    } else {
        Exit::Usage
    })
}
