//! The `dloop` binary: parse the command line, run the command, turn the outcome into an
//! exit code. Everything else lives in the modules below.

mod cli;
mod commands;
mod complete;
mod detach;
mod error;
mod exit;
mod import;
mod load;
mod notify;
mod project;
mod render;
mod runs;
mod scratch;
mod step_output;
mod storage;
mod subloops;
mod templates;
mod watch;
mod web;

use std::process::ExitCode;

use clap::Parser;

use crate::commands::Ctx;
use crate::exit::Exit;
use crate::render::{Paint, Ui};

fn main() -> ExitCode {
    // `COMPLETE=bash dloop ...`: the shell asks for completions (loop names, run ids, states);
    // answer and exit. Without the variable this returns at once.
    clap_complete::CompleteEnv::with_factory(<cli::Cli as clap::CommandFactory>::command)
        .complete();
    let cli = cli::Cli::parse();
    let ui = Ui::new(cli.color, cli.quiet);
    storage::select(cli.store.clone());
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => {
            ui.warn(&format!("error: cannot read the working directory: {e}\n"));
            return Exit::Fault.into();
        }
    };
    // `-C DIR`: as if started there (relative to where we are).
    let cwd = match &cli.directory {
        Some(dir) => match std::fs::canonicalize(cwd.join(dir)) {
            Ok(dir) if dir.is_dir() => dir,
            Ok(_) | Err(_) => {
                ui.warn(&format!(
                    "error: -C {}: no such folder\nhint: give an existing folder\n",
                    dir.display()
                ));
                return Exit::Usage.into();
            }
        },
        None => cwd,
    };
    let ctx = Ctx { ui, cwd };
    match cli.command.run(&ctx) {
        Ok(exit) => exit.into(),
        // `dloop list | head -1`: the reader left; that is not our failure.
        Err(err) if err.is_broken_pipe() => Exit::Ok.into(),
        Err(err) => {
            let report = err.report();
            let report = report
                .replacen("error:", &Paint::Red.apply(ui.color_stderr, "error:"), 1)
                .replacen(
                    "\nhint:",
                    &format!("\n{}", Paint::Yellow.apply(ui.color_stderr, "hint:")),
                    1,
                );
            ui.warn(&report);
            Exit::for_error(err.kind).into()
        }
    }
}
