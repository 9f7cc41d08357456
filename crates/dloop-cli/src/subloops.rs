//! The sub-loop host of a project: how a `loop: NAME` state's child finds its loop and its
//! store ([`dloop_runtime::subloop::SubLoopHost`]). Built by `session::prepare` for every
//! session that can run loops (`run`, `resume`, `fork`).
//!
//! A child loop is only ever a loop of the project's `.loops/` folder, named as `dloop run
//! NAME` names it (letters, digits, `_`, `.`, `-`): never a path, so no loop file can make a
//! child read a file elsewhere. It is loaded with the loader `dloop validate` uses (sub-loop
//! cycles across the project included) when the child is created; a child that already exists
//! keeps the copy of its definition it started with.
//!
//! A run submitted for workers keeps every loop its `loop:` states reach as its bundle
//! ([`bundle_for`], [`SubLoopBundle`]), and so does each child created from it. The children of
//! a run that keeps a bundle resolve from it only, never from a checkout: on a worker
//! ([`BundledLoops`], whose children hold their own leases on the worker's store, see
//! `commands/worker.rs`) and in a `dloop resume` here ([`ProjectLoops`] reads the parent's
//! bundle first). A run without one (every `dloop run`) resolves from the project's loops.

use std::path::PathBuf;

use dloop_core::model::LoopDef;
use dloop_runtime::subloop::{ChildLoop, SubLoopBundle, SubLoopHost};
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
        load_project_loop(&self.project, &self.cwd, name)
    }

    fn store(&self) -> &dyn Store {
        self.storage.store()
    }

    fn local_dir(&self, run_id: &str) -> dloop_store::Result<PathBuf> {
        self.storage.local_dir(run_id)
    }

    fn bundle_for(&self, parent_run: &str) -> Result<Option<SubLoopBundle>, String> {
        stored_bundle(self.storage.store(), parent_run)
    }
}

/// Run `run_id`'s bundle, if it keeps one (a submitted run, or a child of one).
///
/// # Errors
/// A sentence: the store failed, or the blob is not a bundle.
pub(crate) fn stored_bundle(
    store: &dyn Store,
    run_id: &str,
) -> Result<Option<SubLoopBundle>, String> {
    store
        .get_blob(run_id, dloop_runtime::subloop::BUNDLE_BLOB)
        .map_err(|e| format!("cannot read the loops kept with run {run_id}: {e}"))?
        .map(|bytes| SubLoopBundle::from_bytes(run_id, &bytes).map_err(|e| e.to_string()))
        .transpose()
}

/// Loop `name` of `project`'s `.loops/`, read and validated as `dloop run NAME` would;
/// `Err` is a sentence for the user.
fn load_project_loop(
    project: &Project,
    cwd: &std::path::Path,
    name: &str,
) -> Result<ChildLoop, String> {
    check_name(name).map_err(|why| format!("`{name}` is not a loop name: {why}"))?;
    let Some(path) = project.find(name) else {
        return Err(format!(
            "no loop named `{name}` in {}",
            project.loops_dir().display()
        ));
    };
    let file = LoopFile {
        name: name.to_owned(),
        path: path.clone(),
    };
    let loaded = crate::load::load_checked(file, cwd, Some(project));
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

/// Every loop `def`'s `loop:` states reach in `project` (transitively), for `dloop submit` to
/// keep with the run.
///
/// # Errors
/// A reached loop that does not exist or is not valid (a usage error naming it).
pub(crate) fn bundle_for(
    project: &Project,
    cwd: &std::path::Path,
    def: &LoopDef,
) -> Result<SubLoopBundle, CliError> {
    SubLoopBundle::collect(def, &mut |name| load_project_loop(project, cwd, name)).map_err(|why| {
        CliError::usage(format!("cannot keep the run's sub-loops: {why}"))
            .with_hint("fix the loop, then submit again (`dloop validate` lists every problem)")
    })
}

/// A worker's host for one claimed run: children resolve from the run's bundle only; they
/// live in `storage` (the worker's store, whose handles release their leases when dropped).
pub(crate) struct BundledLoops {
    /// The claimed run's bundle (`None`: it was submitted without one).
    pub(crate) bundle: Option<SubLoopBundle>,
    /// The store and local folders children use.
    pub(crate) storage: Storage,
}

impl SubLoopHost for BundledLoops {
    fn load(&self, name: &str) -> Result<ChildLoop, String> {
        match &self.bundle {
            Some(bundle) => bundle.load(name),
            None => Err(format!(
                "no loops were kept with this run when it was submitted, so a worker cannot \
                 start sub-loop `{name}`; `dloop resume` it in the project instead"
            )),
        }
    }

    fn store(&self) -> &dyn Store {
        self.storage.store()
    }

    fn local_dir(&self, run_id: &str) -> dloop_store::Result<PathBuf> {
        self.storage.local_dir(run_id)
    }

    fn bundle_for(&self, _parent_run: &str) -> Result<Option<SubLoopBundle>, String> {
        // The claimed run's bundle holds every loop its descendants reach.
        Ok(self.bundle.clone())
    }
}
