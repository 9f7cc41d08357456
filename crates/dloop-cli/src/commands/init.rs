//! `dloop init`: scaffold `.loops/` with a working example loop and a `config.yaml`, and keep
//! the runtime folder out of git.

use std::fs;
use std::io;
use std::path::Path;

use clap::Args;

use super::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::load::display_path;
use crate::project::{LOOPS_DIR, Project, RUNTIME_DIR};

/// The example loop's name; `init` writes it as `.loops/<EXAMPLE_NAME>.yaml`.
const EXAMPLE_NAME: &str = "check-fix";
/// The example loop: the same file as `examples/check-fix.yaml`, so it is tested like every
/// example (it validates, and runs with no agent installed).
const EXAMPLE_LOOP: &str = include_str!("../../../../examples/check-fix.yaml");
/// `config.yaml`: the documented shape of runner profiles and defaults.
const CONFIG: &str = include_str!("../../templates/config.yaml");
/// The line added to `.gitignore`.
const GITIGNORE_LINE: &str = ".loops/.dloop/";

/// Create .loops/ with a working example loop and a config.yaml.
///
/// The project root is the nearest folder, from the working directory up, holding `.loops/` or
/// `.git`; without either, the working directory. Writes `.loops/check-fix.yaml` (refused if it
/// exists), `.loops/config.yaml` (kept if it exists), and adds `.loops/.dloop/` (run logs and
/// scratch files) to the root's `.gitignore`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Create .loops/ in the working directory even though it is in no git repository (asked on a
    /// terminal, refused otherwise)
    #[arg(long)]
    pub(crate) here: bool,
    /// Write the loop of this built-in template (as .loops/T.yaml) instead of the check-fix
    /// example; `dloop new --list` describes them
    #[arg(long, value_name = "T")]
    pub(crate) template: Option<String>,
}

/// On a terminal, asks whether to create `.loops/` in `dir`; `false` when stdin is not one.
fn confirm_here(dir: &Path) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "{} is in no git repository. Create {LOOPS_DIR}/ here? [y/N] ",
        dir.display()
    );
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok()
        && matches!(answer.trim(), "y" | "Y" | "yes")
}

/// Scaffolds the project; exit 2 (nothing written) when the example loop exists already.
pub(crate) fn cmd_init(ctx: &Ctx, args: InitArgs) -> CmdResult {
    let project = match Project::discover(&ctx.cwd) {
        Some(project) => project,
        // Outside any repository the working directory is rarely meant (a home folder, /tmp):
        // ask, or with no one to ask, refuse and say how.
        None if args.here || confirm_here(&ctx.cwd) => Project {
            root: ctx.cwd.clone(),
        },
        None => {
            return Err(CliError::new(
                ErrorKind::Refused,
                format!(
                    "{} is in no git repository and has no {LOOPS_DIR}/ above it",
                    ctx.cwd.display()
                ),
            )
            .with_hint(
                "run `dloop init` inside your project, or `dloop init --here` to use this folder",
            ));
        }
    };
    // A template is looked up before anything is written, so a typo changes nothing.
    let template = args
        .template
        .as_deref()
        .map(super::new::lookup)
        .transpose()?;
    let (example_name, example_text) = match template {
        Some(t) => (t.name, t.render(t.name)),
        None => (EXAMPLE_NAME, EXAMPLE_LOOP.to_owned()),
    };
    let loops_dir = project.loops_dir();
    let example = loops_dir.join(format!("{example_name}.yaml"));
    let show = |path: &Path| display_path(path, &ctx.cwd);
    // Refuse before writing anything, so a refused init changes nothing.
    if example.exists() {
        return Err(CliError::new(
            ErrorKind::Refused,
            format!("{} exists already; not overwriting it", show(&example)),
        )
        .with_hint(format!(
            "move it away to get a fresh example, or run `dloop validate` to check the loops in {LOOPS_DIR}/"
        )));
    }
    let mut notes = String::new();
    fs::create_dir_all(&loops_dir)
        .map_err(|e| CliError::io(format!("creating {}", show(&loops_dir)), e))?;
    write_new(&example, &example_text)
        .map_err(|e| CliError::io(format!("writing {}", show(&example)), e))?;
    notes.push_str(&format!("created {}\n", show(&example)));
    let config = loops_dir.join("config.yaml");
    match write_new(&config, CONFIG) {
        Ok(()) => notes.push_str(&format!("created {}\n", show(&config))),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            notes.push_str(&format!("kept {} (exists)\n", show(&config)));
        }
        Err(e) => return Err(CliError::io(format!("writing {}", show(&config)), e)),
    }
    let gitignore = project.root.join(".gitignore");
    if add_ignore_line(&gitignore)
        .map_err(|e| CliError::io(format!("updating {}", show(&gitignore)), e))?
    {
        notes.push_str(&format!("added {GITIGNORE_LINE} to {}\n", show(&gitignore)));
    }
    notes.push_str(&format!("next: dloop show {example_name}\n"));
    ctx.ui.status(&notes);
    Ok(Exit::Ok)
}

/// Creates `path` with `text`; fails with `AlreadyExists` rather than replacing a file.
fn write_new(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// Appends the runtime folder to `.gitignore` (creating it) unless a line already ignores it.
/// Returns whether the file changed.
fn add_ignore_line(path: &Path) -> io::Result<bool> {
    let current = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let runtime = format!("{LOOPS_DIR}/{RUNTIME_DIR}");
    let present = current.lines().map(str::trim).any(|line| {
        let line = line.trim_start_matches('/').trim_end_matches('/');
        line == runtime || line == format!("{runtime}/*")
    });
    if present {
        return Ok(false);
    }
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(GITIGNORE_LINE);
    text.push('\n');
    fs::write(path, text)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_line_is_added_once_and_keeps_existing_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(".gitignore");
        fs::write(&path, "target").expect("write");
        assert!(add_ignore_line(&path).expect("add"));
        assert!(!add_ignore_line(&path).expect("add again"));
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "target\n.loops/.dloop/\n"
        );
        fs::write(&path, "/.loops/.dloop\n").expect("write");
        assert!(!add_ignore_line(&path).expect("equivalent line"));
    }
}
