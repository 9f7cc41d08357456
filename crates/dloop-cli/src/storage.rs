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
}

impl Storage {
    /// The storage of `project`: `.loops/.dloop/`.
    pub(crate) fn for_project(project: &Project) -> Storage {
        Storage {
            files: FileStore::new(project.root.join(LOOPS_DIR).join(RUNTIME_DIR)),
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
}
