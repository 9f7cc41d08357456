//! Reading loop files and checking them with `dloop-core`: one [`LoadedLoop`] per file, with
//! its source (for snippets), the parsed loop when there is one, and every diagnostic.

use std::fs;
use std::path::Path;

use dloop_core::diagnostic::Diagnostic;
use dloop_core::parse::ParsedLoop;
use dloop_core::validate::{check_loop, check_subloop_cycles};

use crate::project::{LoopFile, Project};

/// A loop file after reading and checking.
#[derive(Debug)]
pub(crate) struct LoadedLoop {
    /// The name and path.
    pub(crate) file: LoopFile,
    /// The path as shown to the user: relative to the working directory when below it.
    pub(crate) display: String,
    /// The file's text ('' when it could not be read).
    pub(crate) source: String,
    /// The parsed loop, when the file parsed far enough.
    pub(crate) parsed: Option<ParsedLoop>,
    /// Every problem found; empty when the loop is valid.
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl LoadedLoop {
    /// Whether `dloop validate` accepts this loop.
    pub(crate) fn is_valid(&self) -> bool {
        self.parsed.is_some() && self.diagnostics.is_empty()
    }
}

/// `path` relative to `cwd` when it lies below it, else as it is.
pub(crate) fn display_path(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd).unwrap_or(path).display().to_string()
}

/// Reads and checks one loop file. An unreadable file becomes a diagnostic without a span,
/// so one bad file never hides the others.
pub(crate) fn load(file: LoopFile, cwd: &Path) -> LoadedLoop {
    let display = display_path(&file.path, cwd);
    let full = cwd.join(&file.path);
    match fs::read(&full) {
        Ok(bytes) => {
            let (parsed, diagnostics) = check_loop(&bytes);
            let source = String::from_utf8_lossy(&bytes).into_owned();
            LoadedLoop {
                file,
                display,
                source,
                parsed,
                diagnostics,
            }
        }
        Err(e) => LoadedLoop {
            file,
            display,
            source: String::new(),
            parsed: None,
            diagnostics: vec![Diagnostic::new(None, format!("cannot read the file: {e}"))],
        },
    }
}

/// Loads and checks one loop file exactly as `dloop validate` does (sub-loop cycles across the
/// project included): the one loader of `run`, `resume --reload` and `validate`.
pub(crate) fn load_checked(file: LoopFile, cwd: &Path, project: Option<&Project>) -> LoadedLoop {
    let mut loaded = load_all(vec![file], cwd, project);
    // Invariant: load_all returns one LoadedLoop per file given, in order.
    debug_assert_eq!(loaded.len(), 1);
    loaded.remove(0)
}

/// Loads `files`, then checks sub-loop cycles across them and (when there is a project) the
/// project's other loops, which sub-loops may name. Diagnostics land on the loop they name;
/// only `files` are returned.
pub(crate) fn load_all(
    files: Vec<LoopFile>,
    cwd: &Path,
    project: Option<&Project>,
) -> Vec<LoadedLoop> {
    let mut loaded: Vec<LoadedLoop> = files.into_iter().map(|f| load(f, cwd)).collect();
    let extra: Vec<LoadedLoop> = match project.map(Project::loop_files) {
        Some(Ok(all)) => all
            .into_iter()
            .filter(|f| !loaded.iter().any(|l| l.file.name == f.name))
            .map(|f| load(f, cwd))
            .collect(),
        Some(Err(_)) | None => Vec::new(),
    };
    let graph: Vec<(String, &ParsedLoop)> = loaded
        .iter()
        .chain(extra.iter())
        .filter_map(|l| l.parsed.as_ref().map(|p| (l.file.name.clone(), p)))
        .collect();
    let cycles = check_subloop_cycles(&graph);
    // A loop that exists but does not parse is not in the graph, so the check says it "does
    // not exist": say what is true instead.
    let broken: Vec<String> = loaded
        .iter()
        .chain(extra.iter())
        .filter(|l| l.parsed.is_none())
        .map(|l| l.file.name.clone())
        .collect();
    for (name, mut diag) in cycles {
        if let Some(l) = loaded.iter_mut().find(|l| l.file.name == name) {
            if let Some((state, target)) = invalid_target(l, &diag, &broken) {
                diag.message =
                    format!("state `{state}` runs loop `{target}`, which is not a valid loop");
                diag.help = Some(format!("`dloop validate {target}` lists its problems"));
            }
            l.diagnostics.push(diag);
        }
    }
    loaded
}

/// The state and the loop a sub-loop diagnostic of `l` points at (by the span of the state's
/// `loop:`) when that loop is one of `broken` (it exists but does not parse).
fn invalid_target(
    l: &LoadedLoop,
    diag: &Diagnostic,
    broken: &[String],
) -> Option<(String, String)> {
    let parsed = l.parsed.as_ref()?;
    let span = diag.span?;
    parsed.def.states.iter().find_map(|(state, def)| {
        let target = def.sub_loop.as_deref()?;
        let here = parsed.spans.value(&["states", state, "loop"]) == Some(span);
        (here && broken.iter().any(|b| b == target)).then(|| (state.clone(), target.to_owned()))
    })
}
