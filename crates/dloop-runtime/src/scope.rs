//! Scope locks and the wait queue (DESIGN.md §7): runs whose scopes overlap never run at once.
//!
//! A loop's `scope:` lists the paths it may change, relative to the project root; `singleton:
//! true` makes two runs of one loop conflict whatever their scopes. A loop with neither takes
//! no scope at all, and `--no-lock` skips this module.
//!
//! # The registry
//! One JSON file, `registry.json`, in a local folder the composition root gives
//! (`.loops/.dloop/scopes/`), read and rewritten only while holding an exclusive `flock` on
//! `registry.lock` beside it, so every check-and-acquire is atomic (no TOCTOU between two runs):
//!
//! ```json
//! {"schema_version": 1, "next_ticket": 7, "entries": [
//!   {"run": "fix-20261121T104641-f643", "loop_name": "fix", "scope": ["src"],
//!    "paths": ["/repo/src"], "singleton": false, "ticket": 5, "holding": true}]}
//! ```
//!
//! `paths` are the scope resolved against the project root (symlinks resolved, so two
//! spellings of one folder overlap); a path outside the project is refused. Two entries
//! conflict when one path contains the other (component-wise: `src` and `src2` do not).
//!
//! # Liveness
//! An entry is alive while its run's lock is held ([`Store::is_live`]): a run registers only
//! while it holds its run lock, so an entry whose lock is free belongs to a dead (or finished)
//! run. Dead entries are ignored and pruned by whoever holds the registry lock next; nothing is
//! ever cleaned by hand and no PID is guessed. A session removes its own entry when it ends
//! (the [`Ticket`] is dropped), which only makes the release prompt: correctness rests on the
//! run lock. The file is not fsynced: after a reboot every entry is dead anyway.
//!
//! # The queue
//! Each entry takes a ticket from `next_ticket` when it registers: first come, first served.
//! A waiter takes the scope when no live entry that conflicts with it is holding or has an
//! earlier ticket, so when a holder leaves, exactly the first waiter whose scope is free takes
//! it and later ones keep waiting (no stampede); a waiter that does not conflict with the
//! earlier ones does not wait behind them. A new run without `--queue` is refused by a live
//! waiter too (it must not jump the queue).

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use dloop_core::event::{Event, PauseReason};
use dloop_core::model::LoopDef;
use dloop_store::{RunHandle, Store, StoreErrorKind};
use serde::{Deserialize, Serialize};

use crate::driver::Session;
use crate::error::RuntimeError;
use crate::process::StopLevel;

/// The registry's file name in the scopes folder.
pub const REGISTRY_FILE: &str = "registry.json";
/// The lock file whose `flock` guards the registry.
const LOCK_FILE: &str = "registry.lock";
/// The format this version reads and writes.
const SCHEMA_VERSION: u32 = 1;
/// How often a waiter looks at the registry again.
const POLL: Duration = Duration::from_millis(100);

/// How a run takes its scope; `None` where one is expected means `--no-lock`.
#[derive(Debug, Clone)]
pub struct ScopeRequest {
    /// The registry's folder (the composition root's `scopes/`).
    pub registry_dir: PathBuf,
    /// `--queue`: wait for a held scope instead of refusing.
    pub queue: bool,
    /// `--queue-timeout`: give up waiting after this long (the run pauses, `queue_timeout`).
    pub queue_timeout: Option<Duration>,
}

/// One run's place in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The run.
    pub run: String,
    /// Its loop.
    pub loop_name: String,
    /// Its scope as the loop file says it.
    pub scope: Vec<String>,
    /// The scope resolved to absolute paths.
    pub paths: Vec<PathBuf>,
    /// `singleton: true`.
    #[serde(default)]
    pub singleton: bool,
    /// Its place in the queue.
    pub ticket: u64,
    /// Whether it holds the scope (else it waits).
    pub holding: bool,
}

impl Entry {
    /// Whether the two entries may not run at once.
    pub fn conflicts(&self, other: &Entry) -> bool {
        if self.run == other.run {
            return false;
        }
        let singleton = (self.singleton || other.singleton) && self.loop_name == other.loop_name;
        singleton
            || self
                .paths
                .iter()
                .any(|a| other.paths.iter().any(|b| overlaps(a, b)))
    }

    fn scope_text(&self) -> String {
        if self.scope.is_empty() {
            "(singleton)".to_owned()
        } else {
            self.scope.join(", ")
        }
    }
}

/// Whether one path contains the other (or they are the same), component by component.
pub fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    schema_version: u32,
    next_ticket: u64,
    entries: Vec<Entry>,
}

/// What a run claims, resolved; `None` from [`Claim::for_loop`] when it claims nothing.
#[derive(Debug, Clone)]
pub struct Claim {
    request: ScopeRequest,
    entry: Entry,
}

impl Claim {
    /// The claim of a run of `def` (named `loop_name`), or `None` when the loop has no
    /// `scope:` and is no singleton, or the caller skips locking (`request` is `None`).
    ///
    /// # Errors
    /// [`RuntimeError::ScopeOutside`] for a scope path outside the project root.
    pub fn for_loop(
        def: &LoopDef,
        loop_name: &str,
        project_root: &Path,
        request: Option<&ScopeRequest>,
    ) -> Result<Option<Claim>, RuntimeError> {
        let Some(request) = request else {
            return Ok(None);
        };
        if def.scope.is_empty() && !def.singleton {
            return Ok(None);
        }
        let root = std::fs::canonicalize(project_root).map_err(|source| RuntimeError::Io {
            op: "resolve the project root",
            path: project_root.to_owned(),
            source,
        })?;
        let paths = def
            .scope
            .iter()
            .map(|p| resolve(&root, p))
            .collect::<Result<_, _>>()?;
        Ok(Some(Claim {
            request: request.clone(),
            entry: Entry {
                run: String::new(),
                loop_name: loop_name.to_owned(),
                scope: def.scope.clone(),
                paths,
                singleton: def.singleton,
                ticket: 0,
                holding: false,
            },
        }))
    }

    /// Takes the registry lock and checks the claim against every live entry. Without
    /// `--queue` a conflict is [`RuntimeError::ScopeConflict`] (nothing was registered);
    /// otherwise the returned [`Gate`] keeps the registry locked until
    /// [`Gate::register`], so the run can be created in between without a race.
    ///
    /// # Errors
    /// A conflict without `--queue`, or the registry cannot be read.
    pub fn enter(self, store: &dyn Store) -> Result<Gate, RuntimeError> {
        let dir = &self.request.registry_dir;
        let lock = lock_registry(dir)?;
        let mut registry = read(dir)?;
        let pruned = prune(store, &mut registry, None)?;
        if !self.request.queue
            && let Some(blocker) = registry.entries.iter().find(|e| e.conflicts(&self.entry))
        {
            if pruned {
                write(dir, &registry)?;
            }
            return Err(conflict(blocker, &self.entry));
        }
        Ok(Gate {
            claim: self,
            registry,
            _lock: lock,
        })
    }
}

/// The registry, locked, between the check and the registration of one run.
#[derive(Debug)]
pub struct Gate {
    claim: Claim,
    registry: Registry,
    _lock: File,
}

impl Gate {
    /// Registers run `run_id` (which must hold its run lock now) and releases the registry:
    /// holding the scope when it is free, else waiting (with `--queue`).
    ///
    /// # Errors
    /// The registry cannot be written.
    pub fn register(mut self, run_id: &str) -> Result<Ticket, RuntimeError> {
        let mut entry = self.claim.entry.clone();
        entry.run = run_id.to_owned();
        self.registry.entries.retain(|e| e.run != run_id);
        self.registry.next_ticket += 1;
        entry.ticket = self.registry.next_ticket;
        let blocker = self.registry.entries.iter().find(|e| e.conflicts(&entry));
        entry.holding = blocker.is_none();
        let first_blocker = blocker.map(|b| b.run.clone());
        self.registry.entries.push(entry.clone());
        write(&self.claim.request.registry_dir, &self.registry)?;
        Ok(Ticket {
            request: self.claim.request,
            entry,
            first_blocker,
        })
    }
}

/// A run's entry in the registry; dropping it removes the entry (best effort).
#[derive(Debug)]
pub struct Ticket {
    request: ScopeRequest,
    entry: Entry,
    /// Whom the run waits for, when it did not get the scope at once.
    first_blocker: Option<String>,
}

/// What one look at the queue found.
enum Turn {
    Taken,
    Blocked(String),
}

impl Ticket {
    /// One look at the queue, under the registry lock: takes the scope when no live entry
    /// that conflicts with this one holds it or is ahead in the queue.
    fn try_take(&mut self, store: &dyn Store) -> Result<Turn, RuntimeError> {
        let dir = &self.request.registry_dir;
        let _lock = lock_registry(dir)?;
        let mut registry = read(dir)?;
        let mut changed = prune(store, &mut registry, Some(&self.entry.run))?;
        if !registry.entries.iter().any(|e| e.run == self.entry.run) {
            // Our entry vanished (the file was deleted by hand): queue again, at the back.
            registry.next_ticket += 1;
            self.entry.ticket = registry.next_ticket;
            registry.entries.push(self.entry.clone());
            changed = true;
        }
        let me = &self.entry;
        let blocker = registry
            .entries
            .iter()
            .filter(|e| e.conflicts(me) && (e.holding || e.ticket < me.ticket))
            .min_by_key(|e| (!e.holding, e.ticket))
            .map(|e| e.run.clone());
        let turn = match blocker {
            Some(run) => Turn::Blocked(run),
            None => {
                for e in &mut registry.entries {
                    if e.run == me.run {
                        e.holding = true;
                    }
                }
                changed = true;
                Turn::Taken
            }
        };
        if changed {
            write(dir, &registry)?;
        }
        Ok(turn)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Best effort: a failure leaves an entry that is dead once the run lock is released.
        let dir = &self.request.registry_dir;
        let Ok(_lock) = lock_registry(dir) else {
            return;
        };
        if let Ok(mut registry) = read(dir) {
            let before = registry.entries.len();
            registry.entries.retain(|e| e.run != self.entry.run);
            if registry.entries.len() != before {
                let _ = write(dir, &registry);
            }
        }
    }
}

/// For an existing run (resume), which holds its run lock: checks and registers its claim in
/// one step. `None` when the run claims no scope.
///
/// # Errors
/// As [`Claim::enter`] and [`Gate::register`].
pub fn admit(
    store: &dyn Store,
    def: &LoopDef,
    loop_name: &str,
    project_root: &Path,
    request: Option<&ScopeRequest>,
    run_id: &str,
) -> Result<Option<Ticket>, RuntimeError> {
    Claim::for_loop(def, loop_name, project_root, request)?
        .map(|claim| claim.enter(store)?.register(run_id))
        .transpose()
}

/// Takes the scope for the session's run: records `scope_acquired` when it is free, else (with
/// `--queue`) `scope_waiting` once, then waits, polling on the session's clock, until it is
/// free. A stop request (`dloop stop`, Ctrl-C) or `--queue-timeout` during the wait records
/// `run_paused` instead (resume waits again); [`Session::drive`] then ends the session.
///
/// # Errors
/// The log or the registry cannot be written.
pub fn take<R: RunHandle>(
    session: &mut Session<'_, R>,
    store: &dyn Store,
    ticket: Option<&mut Ticket>,
) -> Result<(), RuntimeError> {
    let Some(ticket) = ticket else {
        return Ok(());
    };
    let scope = ticket.entry.scope.clone();
    let Some(first) = ticket.first_blocker.take() else {
        session.record(Event::ScopeAcquired { scope });
        return Ok(());
    };
    session.record(Event::ScopeWaiting {
        scope: scope.clone(),
        holder: first,
    });
    session.flush()?;
    let options = session.options().clone();
    let waited_from = std::time::Instant::now();
    loop {
        if options.stop.level() >= StopLevel::Drain {
            let reason = if options.signals.was_interrupted() {
                PauseReason::Interrupted
            } else {
                PauseReason::Stopped
            };
            session.record(Event::RunPaused {
                reason,
                message: Some("stopped while waiting for its scope".to_owned()),
            });
            return Ok(());
        }
        match ticket.try_take(store)? {
            Turn::Taken => {
                session.record(Event::ScopeAcquired { scope });
                session.flush()?;
                return Ok(());
            }
            Turn::Blocked(holder) => {
                if let Some(limit) = ticket.request.queue_timeout
                    && waited_from.elapsed() >= limit
                {
                    session.record(Event::RunPaused {
                        reason: PauseReason::QueueTimeout,
                        message: Some(format!(
                            "waited {} for scope {} (held by run {holder})",
                            dloop_core::HumanDuration(limit),
                            ticket.entry.scope_text()
                        )),
                    });
                    return Ok(());
                }
            }
        }
        let stop = &options.stop;
        options
            .clock
            .sleep(POLL, &|| stop.level() >= StopLevel::Drain);
    }
}

fn conflict(holder: &Entry, wanted: &Entry) -> RuntimeError {
    RuntimeError::ScopeConflict {
        holder: holder.run.clone(),
        holder_loop: holder.loop_name.clone(),
        holder_scope: holder.scope_text(),
        holder_waiting: !holder.holding,
        scope: wanted.scope_text(),
    }
}

/// Resolves one scope path against the (canonical) project root, component by component:
/// a component that exists is canonicalized (symlinks resolved, so two spellings of one folder
/// overlap), one that does not is appended as written (a scope may name a folder not created
/// yet). Refused when it leaves the project.
fn resolve(root: &Path, scope: &str) -> Result<PathBuf, RuntimeError> {
    let mut base = root.to_owned();
    for component in Path::new(scope).components() {
        match component {
            Component::RootDir => base = PathBuf::from("/"),
            Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                base.pop();
            }
            Component::Normal(name) => {
                base.push(name);
                if let Ok(real) = std::fs::canonicalize(&base) {
                    base = real;
                }
            }
        }
    }
    if base.starts_with(root) {
        Ok(base)
    } else {
        Err(RuntimeError::ScopeOutside {
            scope: scope.to_owned(),
            root: root.to_owned(),
        })
    }
}

fn registry_error(dir: &Path, op: &'static str, source: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        op,
        path: dir.to_owned(),
        source,
    }
}

/// Opens and locks the registry (blocking: it is held for milliseconds).
fn lock_registry(dir: &Path) -> Result<File, RuntimeError> {
    std::fs::create_dir_all(dir).map_err(|e| registry_error(dir, "create", e))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| registry_error(&path, "open", e))?;
    file.lock().map_err(|e| registry_error(&path, "flock", e))?;
    Ok(file)
}

fn read(dir: &Path) -> Result<Registry, RuntimeError> {
    let path = dir.join(REGISTRY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(Registry {
                schema_version: SCHEMA_VERSION,
                ..Registry::default()
            });
        }
        Err(e) => return Err(registry_error(&path, "read", e)),
    };
    let bad = |message: String| RuntimeError::ScopeRegistry {
        path: path.clone(),
        message,
    };
    let registry: Registry =
        serde_json::from_str(&text).map_err(|e| bad(format!("it does not parse: {e}")))?;
    if registry.schema_version != SCHEMA_VERSION {
        return Err(bad(format!(
            "it has schema_version {}; this dloop reads {SCHEMA_VERSION}",
            registry.schema_version
        )));
    }
    Ok(registry)
}

/// Replaces the registry atomically (write a temp file, rename it over).
fn write(dir: &Path, registry: &Registry) -> Result<(), RuntimeError> {
    let path = dir.join(REGISTRY_FILE);
    let tmp = dir.join(format!("{REGISTRY_FILE}.{}.tmp", std::process::id()));
    let text = serde_json::to_string_pretty(registry).map_err(|e| RuntimeError::ScopeRegistry {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| registry_error(&path, "write", e))
}

/// Drops entries whose run is not live (`keep` is the caller's own, live by definition);
/// returns whether any was dropped.
fn prune(
    store: &dyn Store,
    registry: &mut Registry,
    keep: Option<&str>,
) -> Result<bool, RuntimeError> {
    let before = registry.entries.len();
    let mut kept = Vec::with_capacity(before);
    for entry in registry.entries.drain(..) {
        let live = Some(entry.run.as_str()) == keep
            || match store.is_live(&entry.run) {
                Ok(live) => live,
                // A run that was deleted (or a name that is no run) holds nothing.
                Err(e) if e.kind() == StoreErrorKind::NotFound => false,
                Err(e) => return Err(e.into()),
            };
        if live {
            kept.push(entry);
        }
    }
    registry.entries = kept;
    Ok(registry.entries.len() != before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(run: &str, loop_name: &str, paths: &[&str], singleton: bool) -> Entry {
        Entry {
            run: run.into(),
            loop_name: loop_name.into(),
            scope: paths.iter().map(|p| (*p).to_owned()).collect(),
            paths: paths.iter().map(|p| Path::new("/repo").join(p)).collect(),
            singleton,
            ticket: 0,
            holding: true,
        }
    }

    #[test]
    fn containment_is_by_component() {
        assert!(overlaps(Path::new("/repo/src"), Path::new("/repo/src")));
        assert!(overlaps(Path::new("/repo"), Path::new("/repo/src/lib")));
        assert!(overlaps(Path::new("/repo/src/lib"), Path::new("/repo/src")));
        assert!(!overlaps(Path::new("/repo/src"), Path::new("/repo/src2")));
        assert!(!overlaps(Path::new("/repo/docs"), Path::new("/repo/src")));
    }

    #[test]
    fn conflicts_by_path_or_singleton_never_with_itself() {
        let a = entry("a", "fix", &["src"], false);
        assert!(!a.conflicts(&a));
        assert!(a.conflicts(&entry("b", "other", &["src/lib"], false)));
        assert!(!a.conflicts(&entry("b", "other", &["docs"], false)));
        // One loop, disjoint scopes: only a singleton conflicts.
        assert!(!a.conflicts(&entry("b", "fix", &["docs"], false)));
        assert!(a.conflicts(&entry("b", "fix", &["docs"], true)));
        assert!(entry("a", "fix", &[], true).conflicts(&entry("b", "fix", &[], true)));
        assert!(!entry("a", "fix", &[], true).conflicts(&entry("b", "lint", &[], true)));
    }

    #[test]
    fn resolution_follows_symlinks_and_refuses_the_outside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        std::fs::create_dir(root.join("src")).expect("mkdir");
        std::os::unix::fs::symlink(root.join("src"), root.join("link")).expect("symlink");
        assert_eq!(resolve(&root, "link").expect("ok"), root.join("src"));
        assert_eq!(resolve(&root, "./src/").expect("ok"), root.join("src"));
        assert_eq!(
            resolve(&root, "new/deeper/../x").expect("ok"),
            root.join("new/x")
        );
        assert_eq!(resolve(&root, ".").expect("ok"), root);
        for outside in ["..", "../elsewhere", "/etc", "new/../../x"] {
            assert!(
                matches!(
                    resolve(&root, outside),
                    Err(RuntimeError::ScopeOutside { .. })
                ),
                "{outside} should be refused"
            );
        }
        std::os::unix::fs::symlink("/tmp", root.join("away")).expect("symlink");
        assert!(matches!(
            resolve(&root, "away/x"),
            Err(RuntimeError::ScopeOutside { .. })
        ));
    }
}
