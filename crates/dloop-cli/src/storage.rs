//! The composition root of storage: which [`Store`] a project's commands use, and where a
//! run's local folder (`${run.dir}` is its `work/`) lies on this machine. The only file of the
//! CLI that names a concrete store; every command goes through [`Storage::store`] (a test in
//! tests/cli/store_door.rs fails if another file reaches for `FileStore`).
//!
//! The store is picked by `--store URL`, else `DLOOP_STORE`, else `store:` in
//! `.loops/config.yaml`; none of them: the file store of `.loops/.dloop/`, the embedded
//! default. A `postgres://` URL picks the PostgreSQL store ([`PgStore`]). Whatever the store,
//! local folders (a run's `work/`, scope locks, background consoles) stay on this machine under
//! `.loops/.dloop/`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use dloop_runtime::process::{StopFlag, StopLevel};
use dloop_store::{FileStore, Store};
use dloop_store_pg::{LeaseNews, PgStore};

use crate::error::{CliError, ErrorKind};
use crate::project::{LOOPS_DIR, Project, RUNTIME_DIR};

/// `--store` / `DLOOP_STORE`, as `main` read it.
static SELECTED: OnceLock<Option<String>> = OnceLock::new();

/// The stop flag of this process's session, raised when the database says its run must stop
/// (`dloop stop` from another machine) or its lease is lost.
static SESSION_STOP: OnceLock<Arc<StopFlag>> = OnceLock::new();

/// Records the `--store` flag (or `DLOOP_STORE`) for every [`Storage`] of this process.
pub(crate) fn select(url: Option<String>) {
    let _ = SELECTED.set(url.filter(|u| !u.is_empty()));
}

/// Makes stop requests and lost leases that reach this process through the store raise `flag`.
pub(crate) fn watch_stops(flag: &Arc<StopFlag>) {
    let _ = SESSION_STOP.set(Arc::clone(flag));
}

/// The concrete store behind [`Storage::store`].
enum Backend {
    Files(FileStore),
    Pg(Box<PgStore>),
}

/// A project's store and its runs' local folders.
pub(crate) struct Storage {
    backend: Backend,
    /// The file layout of `.loops/.dloop/`, which places local folders whatever the store.
    local: FileStore,
    /// `.loops/.dloop/`: local folders of this machine beside the runs.
    runtime: PathBuf,
}

/// The store URL in force for `project`: the flag or variable, else `config.yaml`'s `store:`.
pub(crate) fn store_url(project: &Project) -> Result<Option<String>, CliError> {
    if let Some(Some(url)) = SELECTED.get() {
        return Ok(Some(url.clone()));
    }
    let path = project.root.join(LOOPS_DIR).join("config.yaml");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    match dloop_core::config::parse_config(&bytes) {
        Ok(config) => Ok(config.store().map(str::to_owned)),
        Err(_) => Err(CliError::new(
            ErrorKind::Invalid,
            format!("{} is not a valid config", path.display()),
        )
        .with_hint("`dloop validate` or a run shows its problems")),
    }
}

/// `--store` / `DLOOP_STORE` alone, for commands that need no project (`db migrate`).
pub(crate) fn store_url_without_project() -> Option<String> {
    SELECTED.get().cloned().flatten()
}

/// Connects to a PostgreSQL store URL, with a hint when the server or schema is not ready.
pub(crate) fn connect_pg(url: &str) -> Result<PgStore, CliError> {
    if !is_pg_url(url) {
        return Err(
            CliError::usage(format!("--store `{url}` is not a store dloop knows"))
                .with_hint("give a postgres:// URL, or no --store (and no DLOOP_STORE) for files"),
        );
    }
    PgStore::connect(url).map_err(|e| {
        CliError {
            kind: ErrorKind::Io,
            source: anyhow::Error::new(e).context("cannot open the PostgreSQL store"),
            hint: None,
        }
        .with_hint("is the server up? a new database needs `dloop db migrate --store URL`")
    })
}

/// Whether `url` names a PostgreSQL store.
pub(crate) fn is_pg_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl Storage {
    /// The storage of `project`: the store in force (see the module docs) and `.loops/.dloop/`.
    pub(crate) fn for_project(project: &Project) -> Result<Storage, CliError> {
        let runtime = project.root.join(LOOPS_DIR).join(RUNTIME_DIR);
        let backend = match store_url(project)? {
            Some(url) => Backend::Pg(Box::new(connect_pg(&url)?.with_watch(Arc::new(
                |_id, news| {
                    if let Some(flag) = SESSION_STOP.get() {
                        flag.raise(match news {
                            LeaseNews::Stop { drain: true } => StopLevel::Drain,
                            LeaseNews::Stop { drain: false } | LeaseNews::Lost => StopLevel::Stop,
                        });
                    }
                },
            )))),
            None => Backend::Files(FileStore::new(runtime.clone())),
        };
        Ok(Storage {
            backend,
            local: FileStore::new(runtime.clone()),
            runtime,
        })
    }

    /// A worker's storage for one run: `pg` (its own connection and lease settings) and the
    /// local folders of `project`, this machine's checkout.
    pub(crate) fn for_worker(project: &Project, pg: PgStore) -> Storage {
        let runtime = project.root.join(LOOPS_DIR).join(RUNTIME_DIR);
        Storage {
            backend: Backend::Pg(Box::new(pg)),
            local: FileStore::new(runtime.clone()),
            runtime,
        }
    }

    /// The store: the only door to runs.
    pub(crate) fn store(&self) -> &dyn Store {
        match &self.backend {
            Backend::Files(files) => files,
            Backend::Pg(pg) => &**pg,
        }
    }

    /// The PostgreSQL store, when that is the store in force (`submit` needs one).
    pub(crate) fn pg(&self) -> Option<&PgStore> {
        match &self.backend {
            Backend::Pg(pg) => Some(&**pg),
            Backend::Files(_) => None,
        }
    }

    /// The local folder of run `id` (its `work/` is `${run.dir}`); fails for an id that
    /// cannot name a folder.
    pub(crate) fn local_dir(&self, id: &str) -> dloop_store::Result<PathBuf> {
        self.local.local_run_dir(id)
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

    /// The runtime folder of `project` (`.loops/.dloop/`), without opening its store (which
    /// may be a database).
    pub(crate) fn runtime_dir_of(project: &Project) -> PathBuf {
        project.root.join(LOOPS_DIR).join(RUNTIME_DIR)
    }

    /// A store for runs that must not remain among the project's (`dloop replay` without
    /// `--live`): a file store in a fresh folder under `.loops/.dloop/scratch/`, removed with
    /// everything in it when the [`ScratchStore`] is dropped. Whatever the project's store, it
    /// is local: nothing of it is meant to outlive the command.
    pub(crate) fn scratch(&self) -> Result<ScratchStore, CliError> {
        let parent = self.runtime.join("scratch");
        std::fs::create_dir_all(&parent)
            .map_err(|e| CliError::io(format!("creating {}", parent.display()), e))?;
        // Never through a planted link: the folder is emptied and removed when done.
        let is_dir = std::fs::symlink_metadata(&parent).is_ok_and(|m| m.is_dir());
        if !is_dir {
            return Err(CliError::new(
                ErrorKind::Corrupt,
                format!("{} is not a folder (a symbolic link?)", parent.display()),
            )
            .with_hint("remove it; dloop makes it again"));
        }
        // Made under the registry lock, which also sweeps the folders of replays that died.
        let registry = crate::scratch::Registry::lock(&parent)
            .map_err(|e| CliError::io(format!("locking {}", parent.display()), e))?;
        remove_stale(&parent, true, &registry);
        // A fresh name, made with `mkdir` (which fails on an existing folder): never shared.
        for attempt in 0..64u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = parent.join(format!(
                "{}{}-{nanos:09}-{attempt}",
                crate::scratch::PREFIX,
                std::process::id()
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    let held = crate::scratch::hold(&dir, &registry).map_err(|e| {
                        let _ = std::fs::remove_dir_all(&dir);
                        CliError::io(format!("locking {}", dir.display()), e)
                    })?;
                    return Ok(ScratchStore {
                        files: FileStore::new(dir.clone()),
                        dir,
                        _held: held,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(CliError::io(format!("creating {}", dir.display()), e)),
            }
        }
        Err(CliError::io(
            format!("creating a folder in {}", parent.display()),
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ))
    }

    /// The scratch folders of replays that are no longer alive (a replay killed by SIGKILL
    /// leaves its folder); with `remove`, removed too ([`crate::scratch::stale`]).
    pub(crate) fn sweep_scratch(&self, remove: bool) -> Result<Vec<PathBuf>, CliError> {
        let parent = self.runtime.join("scratch");
        if !std::fs::symlink_metadata(&parent).is_ok_and(|m| m.is_dir()) {
            return Ok(Vec::new());
        }
        let registry = crate::scratch::Registry::lock(&parent)
            .map_err(|e| CliError::io(format!("locking {}", parent.display()), e))?;
        Ok(remove_stale(&parent, remove, &registry))
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

/// The stale scratch folders under `parent` ([`crate::scratch::stale`]); with `remove`, removed
/// (each while its lock is held). Returns those found (removed, with `remove`).
fn remove_stale(parent: &Path, remove: bool, registry: &crate::scratch::Registry) -> Vec<PathBuf> {
    crate::scratch::stale(parent, registry)
        .into_iter()
        // `remove_dir_all` removes a link inside the folder, never what it points to.
        .filter(|stale| !remove || std::fs::remove_dir_all(&stale.dir).is_ok())
        .map(|stale| stale.dir.clone())
        .collect()
}

/// A file store in a temporary folder, removed when this is dropped ([`Storage::scratch`]).
pub(crate) struct ScratchStore {
    files: FileStore,
    dir: PathBuf,
    /// The lock that says this folder's replay is alive (a later sweep leaves it alone);
    /// released after the folder is removed.
    _held: crate::scratch::Held,
}

impl ScratchStore {
    /// The store.
    pub(crate) fn store(&self) -> &dyn Store {
        &self.files
    }

    /// The local folder of run `id` in the scratch folder.
    pub(crate) fn local_dir(&self, id: &str) -> dloop_store::Result<PathBuf> {
        self.files.local_run_dir(id)
    }
}

impl Drop for ScratchStore {
    fn drop(&mut self) {
        // Best effort: a folder left by a failed removal (or a SIGKILL) holds no run of the
        // project's store, and the next replay or `dloop gc` sweeps it (`crate::scratch`).
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
