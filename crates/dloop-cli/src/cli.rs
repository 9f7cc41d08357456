//! The command line: the top-level [`Cli`] struct, the [`Command`] enum, and the dispatch.
//! Adding a command is one variant here and one line in [`Command::run`].

use clap::{Parser, Subcommand};

use crate::commands::{self, CmdResult, Ctx};

/// dloop runs AI-agent loops durably: small YAML state machines whose states run shell
/// commands or prompt agent CLIs, with every step logged before the next one starts.
#[derive(Debug, Parser)]
#[command(name = "dloop", version, max_term_width = 100)]
pub(crate) struct Cli {
    /// Run as if dloop was started in DIR
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub(crate) directory: Option<std::path::PathBuf>,
    /// When to color output: auto (on a terminal, unless NO_COLOR is set), always, never
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub(crate) color: crate::render::ColorChoice,
    /// Print no narration on stderr (errors and warnings still show)
    #[arg(short = 'q', long, global = true)]
    pub(crate) quiet: bool,
    /// Keep runs in this store: a postgres:// URL (default: files under .loops/.dloop/, or
    /// `store:` in .loops/config.yaml)
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "DLOOP_STORE",
        hide_env_values = true
    )]
    pub(crate) store: Option<String>,
    /// The command to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Every `dloop` command.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create .loops/ with an example loop and a config.yaml
    Init(commands::init::InitArgs),
    /// Create a loop from a built-in template (--list: describe them)
    New(commands::new::NewArgs),
    /// Check loop files; exit 2 on any problem
    Validate(commands::validate::ValidateArgs),
    /// List the loops in .loops/: name, states, description
    List(commands::list::ListArgs),
    /// Show a loop's states, routes and limits, or draw it as a diagram
    Show(commands::show::ShowArgs),
    /// Start a run of a loop and drive it until it ends, pauses or is stopped
    Run(commands::run::RunArgs),
    /// Continue a paused, crashed or timed-out run where it stopped
    Resume(commands::resume::ResumeArgs),
    /// Stop a live run (it pauses; resume continues it)
    Stop(commands::stop::StopArgs),
    /// End a paused or crashed run for good
    Cancel(commands::cancel::CancelArgs),
    /// Show live and resumable runs (--all: finished ones too)
    Status(commands::status::StatusArgs),
    /// Show finished runs, newest first: outcome, steps, duration
    History(commands::history::HistoryArgs),
    /// Print a run's event timeline, readable or raw
    Logs(commands::logs::LogsArgs),
    /// Print a step's full output, also while it runs (-f: live)
    Output(commands::output::OutputArgs),
    /// Show what a step changed in the working tree (default: the whole run so far)
    Diff(commands::diff::DiffArgs),
    /// Put the working tree back to how it was after a step, and pause the run there
    Rewind(commands::rewind::RewindArgs),
    /// Start a new run from a run's history up to a step, and continue it live
    Fork(commands::fork::ForkArgs),
    /// Re-execute a loop against a run's recorded results; stop at the first divergence
    Replay(commands::replay::ReplayArgs),
    /// Run a loop once per task, each in its own git worktree, and integrate the results
    Parallel(commands::parallel::ParallelArgs),
    /// Watch runs live in a terminal dashboard (q quits)
    Watch(commands::watch::WatchArgs),
    /// Serve a local web view of the runs, updated live (read only by default)
    Serve(commands::serve::ServeArgs),
    /// Show a run: status, state, step, context, captures, counters, last error
    Inspect(commands::inspect::InspectArgs),
    /// Delete old finished runs
    Gc(commands::gc::GcArgs),
    /// Delete one run
    Rm(commands::rm::RmArgs),
    /// Enqueue a run of a loop for workers (PostgreSQL store)
    Submit(commands::submit::SubmitArgs),
    /// Claim queued runs from a PostgreSQL store and drive them
    Worker(commands::worker::WorkerArgs),
    /// Manage the PostgreSQL store's database (db migrate)
    Db(commands::db::DbArgs),
    /// Print the JSON Schema of loop files (for editors)
    Schema(commands::schema::SchemaArgs),
    /// Convert loop files of other tools (little-loops) into dloop loops
    Import(commands::import::ImportArgs),
    /// Print a shell completion script
    Completions(commands::completions::CompletionsArgs),
}

impl Command {
    /// Runs the command.
    pub(crate) fn run(self, ctx: &Ctx) -> CmdResult {
        match self {
            Command::Init(args) => commands::init::cmd_init(ctx, args),
            Command::New(args) => commands::new::cmd_new(ctx, args),
            Command::Validate(args) => commands::validate::cmd_validate(ctx, args),
            Command::List(args) => commands::list::cmd_list(ctx, args),
            Command::Show(args) => commands::show::cmd_show(ctx, args),
            Command::Run(args) => commands::run::cmd_run(ctx, args),
            Command::Resume(args) => commands::resume::cmd_resume(ctx, args),
            Command::Stop(args) => commands::stop::cmd_stop(ctx, args),
            Command::Cancel(args) => commands::cancel::cmd_cancel(ctx, args),
            Command::Status(args) => commands::status::cmd_status(ctx, args),
            Command::History(args) => commands::history::cmd_history(ctx, args),
            Command::Logs(args) => commands::logs::cmd_logs(ctx, args),
            Command::Output(args) => commands::output::cmd_output(ctx, args),
            Command::Diff(args) => commands::diff::cmd_diff(ctx, args),
            Command::Rewind(args) => commands::rewind::cmd_rewind(ctx, args),
            Command::Fork(args) => commands::fork::cmd_fork(ctx, args),
            Command::Replay(args) => commands::replay::cmd_replay(ctx, args),
            Command::Parallel(args) => commands::parallel::cmd_parallel(ctx, args),
            Command::Watch(args) => commands::watch::cmd_watch(ctx, args),
            Command::Serve(args) => commands::serve::cmd_serve(ctx, args),
            Command::Inspect(args) => commands::inspect::cmd_inspect(ctx, args),
            Command::Gc(args) => commands::gc::cmd_gc(ctx, args),
            Command::Rm(args) => commands::rm::cmd_rm(ctx, args),
            Command::Submit(args) => commands::submit::cmd_submit(ctx, args),
            Command::Worker(args) => commands::worker::cmd_worker(ctx, args),
            Command::Db(args) => commands::db::cmd_db(ctx, args),
            Command::Schema(args) => commands::schema::cmd_schema(ctx, args),
            Command::Import(args) => commands::import::cmd_import(ctx, args),
            Command::Completions(args) => commands::completions::cmd_completions(ctx, args),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
