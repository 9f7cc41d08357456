//! `dloop db migrate`: create or upgrade the PostgreSQL store's schema (versioned,
//! forward-only; a database newer than this dloop is refused, never downgraded).

use clap::{Args, Subcommand};

use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::project::Project;

/// Manage the PostgreSQL store's database
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop db migrate --store postgres://db.internal/dloop
  DLOOP_STORE='postgres:///dloop?host=/run/postgresql' dloop db migrate")]
pub(crate) struct DbArgs {
    #[command(subcommand)]
    pub(crate) command: DbCommand,
}

/// What to do with the database.
#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Create the tables, or bring them to this dloop's schema version
    Migrate,
}

/// Runs `dloop db ...`.
pub(crate) fn cmd_db(ctx: &Ctx, args: DbArgs) -> CmdResult {
    match args.command {
        DbCommand::Migrate => {
            let project = Project::discover(&ctx.cwd);
            let url = match &project {
                Some(project) => crate::storage::store_url(project)?,
                None => crate::storage::store_url_without_project(),
            };
            let Some(url) = url.filter(|u| crate::storage::is_pg_url(u)) else {
                return Err(CliError::usage("dloop db migrate needs a PostgreSQL store")
                    .with_hint("give --store postgres://..., or set DLOOP_STORE"));
            };
            let done = dloop_store_pg::PgStore::migrate(&url).map_err(|e| CliError {
                kind: ErrorKind::Io,
                source: anyhow::Error::new(e).context("cannot migrate the PostgreSQL store"),
                hint: None,
            })?;
            if done.from == done.to {
                ctx.ui
                    .status(&format!("schema already at version {}\n", done.to));
            } else {
                ctx.ui.status(&format!(
                    "schema migrated from version {} to {}\n",
                    done.from, done.to
                ));
            }
            Ok(Exit::Ok)
        }
    }
}
