//! `dloop schema`: the JSON Schema of loop files, generated from the same types the parser
//! reads, so it cannot drift from what `validate` accepts.

use clap::Args;

use dloop_core::model::LoopDef;

use super::{CmdResult, Ctx};
use crate::exit::Exit;
use crate::render::json::to_pretty;

/// Print the JSON Schema of loop files (draft 2020-12), for editors and linters.
///
/// Point your editor's YAML language server at it, e.g. a first line
/// `# yaml-language-server: $schema=dloop.schema.json` after `dloop schema > dloop.schema.json`.
#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {}

/// Prints the schema on stdout.
pub(crate) fn cmd_schema(ctx: &Ctx, _args: SchemaArgs) -> CmdResult {
    let schema = schemars::schema_for!(LoopDef);
    ctx.ui.print(&to_pretty(&schema))?;
    Ok(Exit::Ok)
}
