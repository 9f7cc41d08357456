//! `dloop import little-loops PATH...`: convert little-loops loop files into dloop loops (the
//! converter is [`crate::import`]), report what did not map, and validate what was written.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::load::display_path;
use crate::project::Project;

/// Convert loop files of other tools into dloop loops.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The format to import.
    #[command(subcommand)]
    pub(crate) from: ImportFrom,
}

/// The formats `dloop import` reads.
#[derive(Debug, Subcommand)]
pub(crate) enum ImportFrom {
    /// Convert little-loops loop files (.loops/*.yaml of ll-loop) into dloop loops.
    ///
    /// Writes .loops/<name>.yaml in the project (or --out DIR) for each file, never replacing
    /// one, and names every construct it could not map with file:line and what to do. Each
    /// written loop is validated as `dloop validate` does. Exit 2 when a file cannot be read or
    /// converted, or a written loop does not validate.
    LittleLoops(LittleLoopsArgs),
}

/// Arguments of `dloop import little-loops`.
#[derive(Debug, Args)]
pub(crate) struct LittleLoopsArgs {
    /// little-loops loop files
    #[arg(required = true, value_name = "PATH")]
    pub(crate) paths: Vec<PathBuf>,
    /// Report what maps and what does not; write nothing
    #[arg(long)]
    pub(crate) check: bool,
    /// Write the loops into DIR instead of the project's .loops/
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Print the report as JSON: an array of {file, loop, written, notes: [{line, message}],
    /// problems}
    #[arg(long)]
    pub(crate) json: bool,
}

/// Converts every file; see [`ImportFrom::LittleLoops`].
pub(crate) fn cmd_import(ctx: &Ctx, args: ImportArgs) -> CmdResult {
    let ImportFrom::LittleLoops(args) = args.from;
    let out_dir = match &args.out {
        Some(dir) => ctx.cwd.join(dir),
        None if args.check => Project::discover(&ctx.cwd)
            .map(|p| p.loops_dir())
            .unwrap_or_else(|| ctx.cwd.clone()),
        None => Project::require(&ctx.cwd)?.loops_dir(),
    };
    let mut report = String::new();
    let mut json = Vec::new();
    let mut failed = false;
    for path in &args.paths {
        let full = ctx.cwd.join(path);
        let shown = display_path(&full, &ctx.cwd);
        let text = std::fs::read_to_string(&full)
            .map_err(|e| CliError::io(format!("reading {shown}"), e))?;
        let conversion = crate::import::convert(&shown, &text, full.parent().unwrap_or(&ctx.cwd))
            .map_err(|why| {
            CliError::new(ErrorKind::Invalid, format!("{shown}: {why}"))
                .with_hint("pass a little-loops loop file (a YAML mapping with `states:`)")
        })?;
        // What `dloop validate` would say about the result, before anything is written.
        let (_, problems) = dloop_core::validate::check_loop(conversion.yaml.as_bytes());
        let problems: Vec<String> = problems
            .iter()
            .map(|d| match &d.span {
                Some(span) => format!("{}:{}: {}", span.line, span.column, d.message),
                None => d.message.clone(),
            })
            .collect();
        let target = out_dir.join(format!("{}.yaml", conversion.name));
        let target_shown = display_path(&target, &ctx.cwd);
        let mut written = None;
        if !args.check && problems.is_empty() {
            if target.exists() {
                return Err(CliError::new(
                    ErrorKind::Refused,
                    format!("{target_shown} exists already; not overwriting it"),
                )
                .with_hint("move it away, or import into another folder with --out DIR"));
            }
            std::fs::create_dir_all(&out_dir)
                .map_err(|e| CliError::io(format!("creating {}", out_dir.display()), e))?;
            std::fs::write(&target, &conversion.yaml)
                .map_err(|e| CliError::io(format!("writing {target_shown}"), e))?;
            written = Some(target_shown.clone());
        }
        failed |= !problems.is_empty();
        let verb = match (&written, problems.is_empty()) {
            (Some(to), _) => format!("wrote {to}"),
            (None, true) => format!("would write {target_shown}"),
            (None, false) => "not written: the result does not validate".to_owned(),
        };
        report.push_str(&format!(
            "{shown}: loop {}: {verb}; {} not mapped\n",
            conversion.name,
            conversion.notes.len()
        ));
        for note in &conversion.notes {
            report.push_str(&format!("  {shown}:{}: {}\n", note.line, note.message));
        }
        for problem in &problems {
            report.push_str(&format!("  invalid: {problem}\n"));
        }
        json.push(serde_json::json!({
            "file": shown,
            "loop": conversion.name,
            "written": written,
            "notes": conversion.notes.iter().map(|n| serde_json::json!({"line": n.line, "message": n.message})).collect::<Vec<_>>(),
            "problems": problems,
        }));
    }
    let text = if args.json {
        let mut text = serde_json::to_string_pretty(&json).expect("JSON of strings");
        text.push('\n');
        text
    } else {
        report
    };
    ctx.ui
        .print(&text)
        .map_err(|e| CliError::io("writing to stdout", e))?;
    if failed {
        return Err(CliError::new(
            ErrorKind::Invalid,
            "an imported loop does not validate (see above)",
        )
        .with_hint("fix the little-loops file or finish the loop by hand from the report"));
    }
    Ok(Exit::Ok)
}
