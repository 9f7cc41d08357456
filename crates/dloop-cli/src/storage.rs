//! The composition root of storage: which [`Store`] a project's commands use, and where a
//! run's local folder (`${run.dir}` is its `work/`) lies on this machine. The only file of the
//! CLI that names a concrete store; every command goes through [`Storage::store`] (a test in
//! tests/cli/store_door.rs fails if another file reaches for `FileStore`).

use std::path::PathBuf;

use dloop_store::{FileStore, Store};

use crate::project::{LOOPS_DIR, Project, RUNTIME_DIR};

/// A project's store and its runs' local folders.
pub(crate) struct Storage {
    /// The file store of `.loops/.dloop/`, the embedded default. A `--store` flag would pick
    /// another `dyn Store` here; the local folders stay on this machine.
    files: FileStore,
    /// `.loops/.dloop/`: local folders of this machine beside the runs.
    runtime: PathBuf,
}

impl Storage {
    /// The storage of `project`: `.loops/.dloop/`.
    pub(crate) fn for_project(project: &Project) -> Storage {
        let runtime = project.root.join(LOOPS_DIR).join(RUNTIME_DIR);
        Storage {
            files: FileStore::new(runtime.clone()),
            runtime,
        }
    }

    /// The store: the only door to runs.
    pub(crate) fn store(&self) -> &dyn Store {
        &self.files
    }

    /// The local folder of run `id` (its `work/` is `${run.dir}`); fails for an id that
    /// cannot name a folder.
    pub(crate) fn local_dir(&self, id: &str) -> dloop_store::Result<PathBuf> {
        self.files.local_run_dir(id)
    }

    /// The scope registry's folder (`.loops/.dloop/scopes/`): scope locks are between the
    /// processes of this machine, so it stays local whatever the store.
    pub(crate) fn scopes_dir(&self) -> PathBuf {
        self.runtime.join("scopes")
    }

    /// dloop's runtime folder (`.loops/.dloop/`), which step checkpoints leave out.
    pub(crate) fn runtime_dir(&self) -> PathBuf {
        self.runtime.clone()
    }

    /// Where worktree runs' worktrees go (`.loops/.dloop/worktrees/<run-id>`): beside the
    /// runs, ignored by git with the rest of the runtime folder.
    pub(crate) fn worktrees_dir(&self) -> PathBuf {
        self.runtime.join("worktrees")
    }

    /// Where parallel coordinators keep their state (`.loops/.dloop/parallel/<id>/`).
    pub(crate) fn parallel_dir(&self) -> PathBuf {
        self.runtime.join("parallel")
    }

    /// Where a background run's console goes until it knows its run id
    /// (`.loops/.dloop/background/`).
    pub(crate) fn background_dir(&self) -> PathBuf {
        self.runtime.join("background")
    }
}
