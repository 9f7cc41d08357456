//! `dloop new NAME --template T`: write `.loops/NAME.yaml` from a built-in template
//! (see [`crate::templates`]); `dloop new --list` describes the templates.

use std::io;

use clap::Args;

use super::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::load::display_path;
use crate::project::{LOOPS_DIR, Project, check_name};
use crate::templates::{self, TEMPLATES};

/// Create a loop from a built-in template: fix-tests, fix-lint, implement-issue, refine-doc,
/// shell-retry.
///
/// Writes `.loops/NAME.yaml` in the project (the nearest folder up holding `.loops/` or `.git`);
/// an existing file is never replaced. `--list` describes every template and how to run it.
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The new loop's name (its file is .loops/NAME.yaml)
    #[arg(required_unless_present = "list")]
    pub(crate) name: Option<String>,
    /// The template to start from (see --list)
    #[arg(short, long, value_name = "T", required_unless_present = "list")]
    pub(crate) template: Option<String>,
    /// Describe the built-in templates and exit
    #[arg(long, conflicts_with_all = ["name", "template"])]
    pub(crate) list: bool,
    /// With --list: print the templates as a JSON array of {name, summary, usage}
    #[arg(long, requires = "list")]
    pub(crate) json: bool,
}

/// Writes the loop, or lists the templates.
pub(crate) fn cmd_new(ctx: &Ctx, args: NewArgs) -> CmdResult {
    if args.list {
        return list(ctx, args.json);
    }
    let (Some(name), Some(template)) = (args.name, args.template) else {
        return Err(CliError::usage("NAME and --template are required"));
    };
    let template = lookup(&template)?;
    check_name(&name).map_err(|why| {
        CliError::usage(format!("`{name}` is not a loop name: {why}"))
            .with_hint("loop names use letters, digits, `_`, `.` and `-`")
    })?;
    let project = Project::discover(&ctx.cwd).ok_or_else(|| {
        CliError::new(
            ErrorKind::Refused,
            format!(
                "{} is in no project (no {LOOPS_DIR}/ or .git above it)",
                ctx.cwd.display()
            ),
        )
        .with_hint("run `dloop init` first, or `dloop init --here` outside a git repository")
    })?;
    let path = write_template(&project, &name, template, ctx)?;
    ctx.ui.status(&format!(
        "created {} from template {}\nnext: {}\n",
        display_path(&path, &ctx.cwd),
        template.name,
        template.usage.replace("NAME", &name)
    ));
    Ok(Exit::Ok)
}

/// The template called `name`, or a usage error listing them.
pub(crate) fn lookup(name: &str) -> Result<&'static templates::Template, CliError> {
    templates::find(name).ok_or_else(|| {
        CliError::usage(format!("there is no template `{name}`")).with_hint(format!(
            "templates: {} (`dloop new --list`)",
            templates::names()
        ))
    })
}

/// Writes `.loops/NAME.yaml` from `template`, refusing to replace a file; returns its path.
pub(crate) fn write_template(
    project: &Project,
    name: &str,
    template: &templates::Template,
    ctx: &Ctx,
) -> Result<std::path::PathBuf, CliError> {
    use std::io::Write as _;
    let dir = project.loops_dir();
    let path = dir.join(format!("{name}.yaml"));
    let show = display_path(&path, &ctx.cwd);
    std::fs::create_dir_all(&dir).map_err(|e| CliError::io(format!("creating {show}"), e))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path);
    match file {
        Ok(mut file) => file
            .write_all(template.render(name).as_bytes())
            .map_err(|e| CliError::io(format!("writing {show}"), e))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(CliError::new(
                ErrorKind::Refused,
                format!("{show} exists already; not overwriting it"),
            )
            .with_hint("choose another NAME, or move the file away"));
        }
        Err(e) => return Err(CliError::io(format!("creating {show}"), e)),
    }
    Ok(path)
}

fn list(ctx: &Ctx, json: bool) -> CmdResult {
    let text = if json {
        let items: Vec<_> = TEMPLATES
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "summary": t.summary, "usage": t.usage}))
            .collect();
        let mut text = serde_json::to_string_pretty(&items).expect("JSON of strings");
        text.push('\n');
        text
    } else {
        let width = TEMPLATES.iter().map(|t| t.name.len()).max().unwrap_or(0);
        let mut text = String::new();
        for t in TEMPLATES {
            text.push_str(&format!("{:width$}  {}\n", t.name, t.summary));
            text.push_str(&format!("{:width$}  run: {}\n", "", t.usage));
        }
        text.push_str("\ncreate one with: dloop new NAME --template T\n");
        text
    };
    ctx.ui
        .print(&text)
        .map_err(|e| CliError::io("writing to stdout", e))?;
    Ok(Exit::Ok)
}
