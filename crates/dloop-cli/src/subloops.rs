//! The sub-loop host of a project: how a `loop: NAME` state's child finds its loop and its
//! store ([`dloop_runtime::subloop::SubLoopHost`]). Built by `session::prepare` for every
//! session that can run loops (`run`, `resume`, `fork`).
//!
//! A child loop is only ever a loop of the project's `.loops/` folder, named as `dloop run
//! NAME` names it (letters, digits, `_`, `.`, `-`): never a path, so no loop file can make a
//! child read a file elsewhere. It is loaded with the loader `dloop validate` uses (sub-loop
//! cycles across the project included) when the child is created; a child that already exists
//! keeps the copy of its definition it started with.

use std::path::PathBuf;

use dloop_runtime::subloop::{ChildLoop, SubLoopHost};
use dloop_store::Store;

use crate::error::CliError;
use crate::project::{LoopFile, Project, check_name};
use crate::storage::Storage;

/// A project's loops and store, for child runs.
pub(crate) struct ProjectLoops {
    project: Project,
    cwd: PathBuf,
    storage: Storage,
}

impl ProjectLoops {
    /// The host of `project`, with a store of its own (the project's store in force).
    pub(crate) fn new(project: &Project, cwd: PathBuf) -> Result<Self, CliError> {
        Ok(Self {
            project: project.clone(),
            cwd,
            storage: Storage::for_project(project)?,
        })
    }
}

impl SubLoopHost for ProjectLoops {
    fn load(&self, name: &str) -> Result<ChildLoop, String> {
        check_name(name).map_err(|why| format!("`{name}` is not a loop name: {why}"))?;
        let Some(path) = self.project.find(name) else {
            return Err(format!(
                "no loop named `{name}` in {}",
                self.project.loops_dir().display()
            ));
        };
        let file = LoopFile {
            name: name.to_owned(),
            path: path.clone(),
        };
        let loaded = crate::load::load_checked(file, &self.cwd, Some(&self.project));
        match loaded.parsed.filter(|_| loaded.diagnostics.is_empty()) {
            Some(parsed) => Ok(ChildLoop {
                name: name.to_owned(),
                def: parsed.def,
                text: loaded.source,
                path: std::fs::canonicalize(&path)
                    .ok()
                    .map(|p| p.display().to_string()),
            }),
            None => Err(format!(
                "{} is not a valid loop ({}); `dloop validate {name}` lists every problem",
                loaded.display,
                loaded
                    .diagnostics
                    .first()
                    .map_or("it cannot be read", |d| d.message.as_str())
            )),
        }
    }

    fn store(&self) -> &dyn Store {
        self.storage.store()
    }

    fn local_dir(&self, run_id: &str) -> dloop_store::Result<PathBuf> {
        self.storage.local_dir(run_id)
    }
}
