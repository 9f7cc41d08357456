//! The project a command works in: root discovery, loop-name rules, resolving a LOOP argument
//! to a file, and listing the loops of `.loops/`.
//!
//! The rule for a LOOP argument (also in the README): it is a **path** only if it ends in
//! `.yaml` or `.yml` *and* names an existing file; anything else is a **name**, looked up as
//! `.loops/<name>.yaml` then `.loops/<name>.yml`. Names match `[A-Za-z0-9][A-Za-z0-9_.-]*`,
//! have at most 64 characters and never contain `..`, so a name cannot leave `.loops/`
//! (`../../etc/passwd` is refused, not opened).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::CliError;

/// The folder holding loop files, relative to the project root.
pub(crate) const LOOPS_DIR: &str = ".loops";
/// The runtime folder inside `.loops/`, which `dloop init` adds to `.gitignore`.
pub(crate) const RUNTIME_DIR: &str = ".dloop";
/// File stems in `.loops/` that are not loops.
const NOT_LOOPS: &[&str] = &["config"];
/// The longest loop name.
const MAX_NAME_LEN: usize = 64;

/// A project: the nearest ancestor of the working directory holding `.loops/` or `.git`.
#[derive(Debug, Clone)]
pub(crate) struct Project {
    /// The project root.
    pub(crate) root: PathBuf,
}

impl Project {
    /// Finds the project containing `cwd`: the nearest ancestor (or `cwd` itself) holding a
    /// `.loops/` folder or a `.git` entry (folder or file, as in worktrees). `None` if there is
    /// none up to the filesystem root.
    pub(crate) fn discover(cwd: &Path) -> Option<Project> {
        cwd.ancestors()
            .find(|dir| dir.join(LOOPS_DIR).is_dir() || dir.join(".git").exists())
            .map(|dir| Project {
                root: dir.to_path_buf(),
            })
    }

    /// Like [`Project::discover`], but a missing project is a usage error with a hint.
    pub(crate) fn require(cwd: &Path) -> Result<Project, CliError> {
        Project::discover(cwd).ok_or_else(|| {
            CliError::usage(format!(
                "no `{LOOPS_DIR}/` folder or git repository found in {} or any parent",
                cwd.display()
            ))
            .with_hint("run `dloop init` to create .loops/ here, or give a path to a loop file")
        })
    }

    /// `<root>/.loops`.
    pub(crate) fn loops_dir(&self) -> PathBuf {
        self.root.join(LOOPS_DIR)
    }

    /// Every loop file in `.loops/` (`*.yaml`, `*.yml`; not `config.yaml`, not files whose stem
    /// is not a valid name), sorted by name. When both `x.yaml` and `x.yml` exist, `x.yaml` is
    /// the one a name resolves to, so it is the one listed. A missing `.loops/` is no loops.
    pub(crate) fn loop_files(&self) -> Result<Vec<LoopFile>, CliError> {
        let dir = self.loops_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CliError::io(format!("reading {}", dir.display()), e)),
        };
        let mut files: Vec<LoopFile> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| CliError::io(format!("reading {}", dir.display()), e))?;
            let path = entry.path();
            let Some(name) = loop_stem(&path) else {
                continue;
            };
            if NOT_LOOPS.contains(&name.as_str()) || check_name(&name).is_err() || !path.is_file() {
                continue;
            }
            files.push(LoopFile { name, path });
        }
        // `.yaml` sorts before `.yml`, so after the sort the first of two same-named files is
        // the one resolution picks.
        files.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.path.cmp(&b.path)));
        files.dedup_by(|later, first| later.name == first.name);
        Ok(files)
    }

    /// The file of the loop called `name` (already checked by [`check_name`]).
    pub(crate) fn find(&self, name: &str) -> Option<PathBuf> {
        ["yaml", "yml"]
            .iter()
            .map(|ext| self.loops_dir().join(format!("{name}.{ext}")))
            .find(|path| path.is_file())
    }
}

/// A loop file and the name it is known by (its file name without extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoopFile {
    /// The name: the file stem.
    pub(crate) name: String,
    /// Where the file is.
    pub(crate) path: PathBuf,
}

/// The stem of a `*.yaml` / `*.yml` path.
fn loop_stem(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?;
    if ext != "yaml" && ext != "yml" {
        return None;
    }
    path.file_stem()?.to_str().map(str::to_owned)
}

/// Checks a loop name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64 characters, no `..`.
/// The error says what is wrong, to follow "`NAME` is not a loop name: ".
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("it is empty".to_owned()),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err(format!("it must start with a letter or digit, not `{c}`"));
        }
        Some(_) => {}
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!(
            "`{c}` is not allowed (names use letters, digits, `_`, `.` and `-`)"
        ));
    }
    if name.contains("..") {
        return Err("it contains `..`".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    Ok(())
}

/// Resolves a LOOP argument (see the module docs for the rule). Paths are taken relative to
/// `cwd`; names need a project.
pub(crate) fn resolve_loop(
    arg: &str,
    cwd: &Path,
    project: Option<&Project>,
) -> Result<LoopFile, CliError> {
    let as_path = cwd.join(arg);
    if loop_stem(Path::new(arg)).is_some() && as_path.is_file() {
        let name = loop_stem(&as_path).unwrap_or_else(|| arg.to_owned());
        return Ok(LoopFile {
            name,
            path: PathBuf::from(arg),
        });
    }
    // Written like a path (a .yaml/.yml name, or a `/`): say the file is missing rather than
    // that it is a bad loop name.
    if (loop_stem(Path::new(arg)).is_some() || arg.contains('/')) && !as_path.exists() {
        return Err(CliError::usage(format!("no such file: {arg}"))
            .with_hint("give an existing .yaml or .yml file, or a loop name from `dloop list`"));
    }
    if let Err(why) = check_name(arg) {
        return Err(
            CliError::usage(format!("`{arg}` is not a loop name: {why}")).with_hint(
                "give a loop name from `dloop list`, or a path to an existing .yaml or .yml file",
            ),
        );
    }
    if NOT_LOOPS.contains(&arg) {
        return Err(CliError::usage(format!(
            "`{arg}` is not a loop name: `{LOOPS_DIR}/{arg}.yaml` holds dloop's configuration"
        )));
    }
    let Some(project) = project else {
        return Err(CliError::usage(format!(
            "no loop named `{arg}`: there is no `{LOOPS_DIR}/` folder here or in any parent"
        ))
        .with_hint("run `dloop init`, or give a path to an existing .yaml or .yml file"));
    };
    if let Some(path) = project.find(arg) {
        return Ok(LoopFile {
            name: arg.to_owned(),
            path,
        });
    }
    let known: Vec<String> = project
        .loop_files()
        .unwrap_or_default()
        .into_iter()
        .map(|f| f.name)
        .collect();
    let close = dloop_core::diagnostic::suggest(arg, known.iter().map(String::as_str));
    let hint = match close {
        Some(close) => format!(
            "did you mean `{close}`? (known loops: {})",
            known.join(", ")
        ),
        None if known.is_empty() => {
            format!("{LOOPS_DIR}/ holds no loops; run `dloop init` for an example")
        }
        None => format!("known loops: {}", known.join(", ")),
    };
    Err(CliError::usage(format!(
        "no loop named `{arg}` (looked for {LOOPS_DIR}/{arg}.yaml and {LOOPS_DIR}/{arg}.yml)"
    ))
    .with_hint(hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_names() {
        for good in ["a", "fix-tests", "v1.2_beta", "A9", &"x".repeat(64)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-a",
            ".hidden",
            "a/b",
            "../../etc/passwd",
            "a..b",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn traversal_is_refused_as_a_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir(dir.path().join(LOOPS_DIR)).expect("mkdir");
        let project = Project::discover(dir.path()).expect("project");
        let err = resolve_loop("../../etc/passwd", dir.path(), Some(&project)).unwrap_err();
        assert!(
            err.source
                .to_string()
                .starts_with("`../../etc/passwd` is not a loop name")
        );
    }

    #[test]
    fn listing_skips_config_and_prefers_yaml() {
        let dir = tempfile::tempdir().expect("temp dir");
        let loops = dir.path().join(LOOPS_DIR);
        fs::create_dir(&loops).expect("mkdir");
        for file in [
            "b.yml",
            "a.yaml",
            "a.yml",
            "config.yaml",
            "notes.txt",
            "-x.yaml",
        ] {
            fs::write(loops.join(file), "").expect("write");
        }
        let project = Project {
            root: dir.path().to_path_buf(),
        };
        let names: Vec<_> = project
            .loop_files()
            .expect("list")
            .into_iter()
            .map(|f| {
                f.path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["a.yaml", "b.yml"]);
    }
}
