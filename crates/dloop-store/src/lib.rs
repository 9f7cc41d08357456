//! dloop-store: durability for dloop runs. The log is the truth; everything else is derived.
//!
//! The store persists a run's events as an append-only log, caches the fold of those events in
//! a snapshot, and guards each run with a kernel lock held by its live runner. It knows nothing
//! of loops or processes: what the events mean is `dloop-core`'s business, acting on them the
//! runtime's.
//!
//! # Brief overview
//! - [`Store`] / [`RunHandle`]: the contract every store keeps (the file store here, the
//!   PostgreSQL store in the `dloop-store-pg` crate), object-safe so a store is picked at run time (`Box<dyn Store>`); the runtime and
//!   every command reach storage only through them. [`conformance`] (feature `conformance`) is
//!   the suite that checks a store.
//! - [`FileStore`]: runs as folders of files: `events.jsonl` ([`EventLog`], line format in
//!   [`record`]), `state.json`, `lock`, `run.json` ([`RunMeta`]), named blobs.
//! - [`StoreError`] and its [`StoreErrorKind`], which callers match to pick a reaction.
//! - [`crash_point`]: `DLOOP_CRASH_AT` hooks for kill -9 tests.
//! - `fault` (feature `fault-injection`): the I/O seam's `FaultPlan`, which fails, cuts short
//!   or crashes any write, fsync, rename or read of the file store, for its fault tests.
//!
//! # Guarantees (every store)
//! 1. `append` is durable when it returns `Ok` (file store: one `write`, one `fdatasync`), and a
//!    batch is all-or-nothing: after a crash at any point a reopened run has every record of a
//!    batch or none.
//! 2. Seqs are 1, 2, 3, ... without gaps; `append` returns the records with their seqs.
//! 3. `create_run` never opens an existing run ([`StoreError::AlreadyExists`]); `open_run` never
//!    creates one ([`StoreError::NotFound`]).
//! 4. Writes happen only under the run lock: `create_run` and `open_run` return a handle holding
//!    it; a second `open_run` while it is held fails with [`StoreError::AlreadyLive`]. Readers
//!    ([`Store::load_state`], [`Store::records_from`], [`Store::is_live`]) never take it.
//! 5. After a failed write or fsync a handle refuses every further write; the next open repairs
//!    only what a crash can produce (the unfinished last batch) and refuses anything else,
//!    naming the 1-based line: a damaged line with more after it, a log with no valid record,
//!    a log that no longer holds the record its snapshot was taken at.
//! 6. The state from [`RunHandle::load_state`] equals the fold of every record of the log, whether
//!    it came from a snapshot plus the tail or from a full replay; resume cost does not grow with
//!    the log before the snapshot. A snapshot or `run.json` edited by hand is never believed.
//! 7. A writer whose claim is gone (the file store's lock file deleted or replaced, a lease
//!    expired) gets [`StoreError::ClaimLost`] from its next write and must stop.
//! 8. A run appears whole or not at all: a creation cut short is listed as [`Incomplete`],
//!    never as a run, and [`Store::remove_incomplete`] cleans it.
//!
//! # Example
//! ```
//! use dloop_core::{Event, RunState, Timestamp};
//! use dloop_store::{FileStore, RunMeta, Store};
//!
//! let tmp = tempfile::tempdir()?;
//! let store: Box<dyn Store> = Box::new(FileStore::new(tmp.path().join(".dloop")));
//! let meta = RunMeta {
//!     id: "demo-20261121T103207-a1b2".into(),
//!     loop_name: "demo".into(),
//!     definition: "name: demo\n".into(),
//!     definition_sha256: RunMeta::sha256_hex("name: demo\n"),
//!     context: Default::default(),
//!     argv: vec!["dloop".into(), "run".into(), "demo".into()],
//!     created_at: Timestamp::from_millis(0),
//!     project_root: "/tmp/project".into(),
//!     loop_path: None,
//!     started: None,
//!     worktree: None,
//! };
//! let mut run = store.create_run(&meta)?;
//! let event = Event::LogRepaired { dropped_bytes: 0, reason: "example".into() };
//! let records = run.append(&[event.clone(), event], Timestamp::from_millis(1))?;
//! assert_eq!(records[1].seq, 2);
//! let folded = RunState::from_records(&records);
//! run.save_snapshot(&folded)?;
//! drop(run); // releases the run lock
//!
//! let mut run = store.open_run(&meta.id)?;
//! let (state, info) = run.load_state()?;
//! assert_eq!((state.last_seq, info.snapshot_seq, info.repair), (2, Some(2), None));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod crash;
mod error;
#[cfg(feature = "fault-injection")]
pub mod fault;
#[cfg(not(feature = "fault-injection"))]
mod fault;
mod file_store;
mod files;
mod lock;
mod log;
mod output;
mod reader;
pub mod record;
mod run_dir;
mod scan;
mod snapshot;

#[cfg(feature = "conformance")]
pub mod conformance;

use dloop_core::{Event, Record, RunState, Timestamp};

pub use crash::crash_point;
pub use error::{Damage, Result, StoreError, StoreErrorKind};
pub use file_store::FileStore;
pub use lock::LockInfo;
pub use log::EventLog;
pub use run_dir::{RunMeta, WorktreeRef, validate_blob_name, validate_run_id};
pub use scan::{Repair, ScanStart};

/// How [`Store::load_state`] / [`RunHandle::load_state`] got the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadInfo {
    /// Seq of the last record folded (0 for an empty log).
    pub last_seq: u64,
    /// The snapshot's seq when one was used.
    pub snapshot_seq: Option<u64>,
    /// Records folded from the log (after the snapshot, or all of them).
    pub replayed: u64,
    /// Why a snapshot that exists was not used (missing is not reported): unreadable, edited
    /// (its checksum fails), written by an older version, or taken from another log. The
    /// whole log was replayed instead.
    pub snapshot_ignored: Option<String>,
    /// A crash's torn tail: cut by the writer (append a `log_repaired` event saying so), or
    /// ignored by a reader (it may be a write in progress).
    pub repair: Option<Repair>,
}

/// Streams records, in seq order, in constant memory.
pub type Records = Box<dyn Iterator<Item = Result<Record>>>;

/// One run as a listing shows it.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// The fold of its log.
    pub state: RunState,
    /// Whether a live process holds it (false, unprobed, for a finished run).
    pub live: bool,
}

/// A run folder (or row) that is not a run: a creation or deletion cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    /// Its name, for [`Store::remove_incomplete`].
    pub name: String,
    /// What it is, for a note.
    pub why: String,
    /// A process is creating or deleting it right now; leave it alone.
    pub busy: bool,
}

/// Every run of a store, for listings.
#[derive(Debug, Default)]
pub struct RunList {
    /// The runs that load, sorted by id.
    pub runs: Vec<RunSummary>,
    /// Runs that cannot be read (a damaged log, a link), with why.
    pub unreadable: Vec<(String, StoreError)>,
    /// Leftovers that are not runs.
    pub incomplete: Vec<Incomplete>,
}

/// The writer's end of a run's output stream: every byte the run's actions print, appended as
/// it arrives; records point into it by offset and length.
pub trait OutputStream: std::fmt::Debug + Send {
    /// Its length: where the next append starts.
    fn len(&self) -> u64;

    /// Whether nothing was ever appended.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `bytes`: readable at once, not durable until [`OutputStream::sync`].
    fn append(&mut self, bytes: &[u8]) -> Result<()>;

    /// Makes everything appended so far durable.
    fn sync(&mut self) -> Result<()>;
}

/// New records of a run as they are appended (`dloop logs --follow`).
pub trait Follow {
    /// The whole batches appended since the last poll (or since the seq the follow started
    /// after); empty when there are none yet. Never returns half a batch.
    fn poll(&mut self) -> Result<Vec<Record>>;
}

/// A store of runs: the only door to storage. Object-safe, so the store is picked at run time;
/// no paths here, so a store on a database can implement it.
pub trait Store {
    /// Creates run `meta.id` with its metadata and an empty log, and returns it locked. The
    /// run appears whole or not at all.
    /// Errors: [`StoreError::AlreadyExists`] (retry with another id), [`StoreError::InvalidRunId`].
    fn create_run(&self, meta: &RunMeta) -> Result<Box<dyn RunHandle>>;

    /// Takes the claim (lock) of an existing run. Call [`RunHandle::load_state`] before
    /// appending. Errors: [`StoreError::NotFound`], [`StoreError::AlreadyLive`].
    fn open_run(&self, id: &str) -> Result<Box<dyn RunHandle>>;

    /// Every run id, sorted; cheap (no log is read). Incomplete leftovers are not runs.
    fn run_ids(&self) -> Result<Vec<String>>;

    /// Every run with its state and liveness, the unreadable ones apart, and the leftovers.
    fn list_runs(&self) -> Result<RunList>;

    /// The metadata the run was created with, checked against its own hash.
    /// Errors: [`StoreError::MetaMissing`], [`StoreError::TamperedMeta`], [`StoreError::BadMeta`].
    fn read_meta(&self, id: &str) -> Result<RunMeta>;

    /// The run's state, read only (no lock, nothing modified): snapshot plus the log after it.
    fn load_state(&self, id: &str) -> Result<(RunState, LoadInfo)>;

    /// True when a live process holds the run's claim.
    fn is_live(&self, id: &str) -> Result<bool>;

    /// Who holds the run's claim (pid and host, for `dloop stop`), when someone does.
    fn holder(&self, id: &str) -> Result<Option<LockInfo>>;

    /// The run's records from `seq` on (1: all), read only, in constant memory.
    fn records_from(&self, id: &str, seq: u64) -> Result<Records>;

    /// Follows the run's records after `after_seq` as they are appended.
    fn follow(&self, id: &str, after_seq: u64) -> Result<Box<dyn Follow>>;

    /// The blob `name` of run `id`, if it has one (read only).
    /// Errors: [`StoreError::InvalidBlobName`].
    fn get_blob(&self, id: &str, name: &str) -> Result<Option<Vec<u8>>>;

    /// Reads the run's output stream from offset `from` to `to` (to its end when `None`, or when
    /// the stream is shorter); returns the bytes and the offset read up to. Works while the
    /// run's writer appends.
    fn read_output(&self, id: &str, from: u64, to: Option<u64>) -> Result<(Vec<u8>, u64)>;

    /// Removes the leftover `name` from [`RunList::incomplete`] unless a process is still at
    /// work on it. Returns whether it was removed; a name that is not a leftover is kept.
    fn remove_incomplete(&self, name: &str) -> Result<bool>;

    /// The runs waiting in this store's queue for a worker (`dloop submit`, or a worker's run
    /// whose worker let go or died) that nobody holds right now: listings show them as
    /// `queued`. Sorted; empty for a store without workers (the file store).
    fn queued_runs(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Asks the live holder of run `id` to stop (`drain`: after its current action) through
    /// the store itself, for holders a signal cannot reach (a worker on another machine).
    /// Returns `false` when this store carries no such request or the holder is reached by a
    /// signal instead (then signal [`Store::holder`]'s pid); the file store always does.
    fn request_stop(&self, id: &str, drain: bool) -> Result<bool> {
        let _ = (id, drain);
        Ok(false)
    }
}

/// The writer's handle on one run: holds its claim (the file store's lock) until dropped.
pub trait RunHandle: std::fmt::Debug {
    /// The run id.
    fn id(&self) -> &str;

    /// Loads the state (snapshot plus the log after it). The first call after `open_run`
    /// verifies the log's tail (and that the snapshot's last record is still intact and in
    /// place) and cuts a crash's torn tail ([`LoadInfo::repair`]: append a `log_repaired`
    /// event); it must come before `append`. Errors: [`StoreError::Corrupt`],
    /// [`StoreError::SeqGap`], [`StoreError::NoValidRecord`], [`StoreError::LogBehindSnapshot`].
    fn load_state(&mut self) -> Result<(RunState, LoadInfo)>;

    /// Appends `events` as one durable, all-or-nothing batch with timestamp `now`; returns their
    /// records. Errors: [`StoreError::NotLoaded`], [`StoreError::Poisoned`] after a failure,
    /// [`StoreError::ClaimLost`].
    fn append(&mut self, events: &[Event], now: Timestamp) -> Result<Vec<Record>>;

    /// Caches `state`, which must be the fold of every record appended so far.
    fn save_snapshot(&mut self, state: &RunState) -> Result<()>;

    /// Seq of the last record, once loaded (`None` before `load_state` after `open_run`).
    fn last_seq(&self) -> Option<u64>;

    /// The run's records from `seq` on, in constant memory.
    fn records_from(&self, seq: u64) -> Result<Records>;

    /// Stores `bytes` as the run's blob `name` (replacing it), durably: a record appended after
    /// this returns may name it. Errors: [`StoreError::InvalidBlobName`].
    fn put_blob(&mut self, name: &str, bytes: &[u8]) -> Result<()>;

    /// The run's blob `name`, if it has one.
    fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Opens the run's output stream for appending (empty the first time).
    fn open_output(&mut self) -> Result<Box<dyn OutputStream>>;

    /// Reads the run's output stream, like [`Store::read_output`].
    fn read_output(&self, from: u64, to: Option<u64>) -> Result<(Vec<u8>, u64)>;

    /// `Ok` while this handle still holds the run's claim; [`StoreError::ClaimLost`] once it
    /// does not (then stop: another process may write the run). Cheap (one `stat` for files).
    fn check_claim(&self) -> Result<()>;

    /// Deletes the run, under the claim this handle holds.
    fn delete(self: Box<Self>) -> Result<()>;
}

impl<T: RunHandle + ?Sized> RunHandle for Box<T> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn load_state(&mut self) -> Result<(RunState, LoadInfo)> {
        (**self).load_state()
    }
    fn append(&mut self, events: &[Event], now: Timestamp) -> Result<Vec<Record>> {
        (**self).append(events, now)
    }
    fn save_snapshot(&mut self, state: &RunState) -> Result<()> {
        (**self).save_snapshot(state)
    }
    fn last_seq(&self) -> Option<u64> {
        (**self).last_seq()
    }
    fn records_from(&self, seq: u64) -> Result<Records> {
        (**self).records_from(seq)
    }
    fn put_blob(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        (**self).put_blob(name, bytes)
    }
    fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>> {
        (**self).get_blob(name)
    }
    fn open_output(&mut self) -> Result<Box<dyn OutputStream>> {
        (**self).open_output()
    }
    fn read_output(&self, from: u64, to: Option<u64>) -> Result<(Vec<u8>, u64)> {
        (**self).read_output(from, to)
    }
    fn check_claim(&self) -> Result<()> {
        (**self).check_claim()
    }
    fn delete(self: Box<Self>) -> Result<()> {
        T::delete(*self)
    }
}
