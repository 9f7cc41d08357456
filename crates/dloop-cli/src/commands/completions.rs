//! `dloop completions SHELL`: a completion script from the clap definition.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{CmdResult, Ctx};
use crate::cli::Cli;
use crate::exit::Exit;

/// Print a shell completion script on stdout.
///
/// For example: `dloop completions bash > ~/.local/share/bash-completion/completions/dloop`,
/// or `dloop completions zsh > "${fpath[1]}/_dloop"`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub(crate) shell: Shell,
}

/// Writes the script for `args.shell`.
pub(crate) fn cmd_completions(ctx: &Ctx, args: CompletionsArgs) -> CmdResult {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "dloop", &mut script);
    ctx.ui.print(&String::from_utf8_lossy(&script))?;
    Ok(Exit::Ok)
}
