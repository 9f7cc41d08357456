//! One module per command: `<Name>Args` (clap derive; the doc comment is the help) and
//! `cmd_<name>(ctx, args)`, which returns the exit status or a [`CliError`].

pub(crate) mod cancel;
pub(crate) mod completions;
pub(crate) mod db;
pub(crate) mod diff;
pub(crate) mod fork;
pub(crate) mod gc;
pub(crate) mod history;
pub(crate) mod import;
pub(crate) mod init;
pub(crate) mod inspect;
pub(crate) mod list;
pub(crate) mod logs;
pub(crate) mod new;
pub(crate) mod output;
pub(crate) mod parallel;
pub(crate) mod plan;
pub(crate) mod replay;
pub(crate) mod resume;
pub(crate) mod rewind;
pub(crate) mod rm;
pub(crate) mod run;
pub(crate) mod schema;
pub(crate) mod serve;
pub(crate) mod session;
pub(crate) mod show;
pub(crate) mod status;
pub(crate) mod stop;
pub(crate) mod submit;
pub(crate) mod validate;
pub(crate) mod watch;
pub(crate) mod worker;

use std::path::PathBuf;

use crate::error::CliError;
use crate::exit::Exit;
use crate::render::Ui;

/// What every command gets: output settings and the working directory.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// Colors and the stdout/stderr writers.
    pub(crate) ui: Ui,
    /// The working directory the project is discovered from.
    pub(crate) cwd: PathBuf,
}

/// What a command returns.
pub(crate) type CmdResult = Result<Exit, CliError>;
