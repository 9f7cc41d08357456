//! Dynamic shell completion: loop names, run ids and state names of the project the shell is
//! in, computed by dloop itself when the shell asks (`COMPLETE=bash dloop ...`, clap's dynamic
//! completion). Everything here is best effort: a project that cannot be read completes nothing.

use clap_complete::engine::CompletionCandidate;

use crate::project::Project;
use crate::storage::Storage;

fn project() -> Option<Project> {
    Project::discover(&std::env::current_dir().ok()?)
}

/// The loops of `.loops/`.
pub(crate) fn loop_names() -> Vec<CompletionCandidate> {
    let Some(project) = project() else {
        return Vec::new();
    };
    project
        .loop_files()
        .unwrap_or_default()
        .into_iter()
        .map(|f| CompletionCandidate::new(f.name))
        .collect()
}

/// Run ids, newest last, and the loop names (which name a loop's run).
pub(crate) fn run_ids() -> Vec<CompletionCandidate> {
    let Some(project) = project() else {
        return Vec::new();
    };
    let Ok(storage) = Storage::for_project(&project) else {
        return Vec::new();
    };
    let mut out: Vec<CompletionCandidate> = crate::runs::run_ids(storage.store())
        .unwrap_or_default()
        .into_iter()
        .map(|id| CompletionCandidate::new(id.as_str().to_owned()))
        .collect();
    out.extend(loop_names());
    out
}

/// State names of every loop of the project (for `--skip-to`).
pub(crate) fn state_names() -> Vec<CompletionCandidate> {
    let Some(project) = project() else {
        return Vec::new();
    };
    let mut names = std::collections::BTreeSet::new();
    for file in project.loop_files().unwrap_or_default() {
        let Ok(text) = std::fs::read(project.root.join(&file.path)) else {
            continue;
        };
        if let Ok(parsed) = dloop_core::parse::parse_loop(&text) {
            names.extend(parsed.def.states.keys().cloned());
        }
    }
    names.into_iter().map(CompletionCandidate::new).collect()
}
