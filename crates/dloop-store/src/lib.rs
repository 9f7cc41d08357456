//! dloop-store: durability for dloop runs. The log is the truth; everything else is derived.
//!
//! The store persists a run's events as an append-only log, caches the fold of those events in
//! a snapshot, and guards each run with a kernel lock held by its live runner. It knows nothing
//! of loops or processes: what the events mean is `dloop-core`'s business, acting on them the
//! runtime's.
//!
//! # Brief overview
//! - [`Store`] / [`RunHandle`]: the contract every store keeps (the file store now, Postgres
//!   later); [`conformance`] (feature `conformance`) is the suite that checks it.
//! - [`FileStore`] / [`FileRun`]: runs as folders of files: `events.jsonl` ([`EventLog`], format
//!   in [`record`]), `state.json` ([`snapshot`]), `lock` ([`lock`]), `run.json` ([`RunMeta`]).
//! - [`Fold`]: what a run's state must be to be rebuilt from records and cached in a snapshot.
//! - [`crash_point`]: `DLOOP_CRASH_AT` hooks for kill -9 tests.
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
//!    (a damaged tail) or refuses (damage followed by valid records).
//! 6. The state from [`RunHandle::load_state`] equals the fold of every record of the log, whether
//!    it came from a snapshot plus the tail or from a full replay; resume cost does not grow with
//!    the log before the snapshot.
//!
//! # Example
//! ```
//! use dloop_core::{Event, RunState, Timestamp};
//! use dloop_store::{FileStore, RunHandle, RunMeta, Store};
//!
//! let tmp = tempfile::tempdir()?;
//! let store = FileStore::new(tmp.path().join(".dloop"));
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
//! let (state, info) = run.load_state::<RunState>()?;
//! assert_eq!((state.last_seq, info.snapshot_seq, info.repair), (2, Some(2), None));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod crash;
pub mod error;
pub mod file_store;
pub mod lock;
pub mod log;
pub mod record;
pub mod run_dir;
pub mod snapshot;

#[cfg(feature = "conformance")]
pub mod conformance;

use dloop_core::{Event, Record, RunState, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crash::crash_point;
pub use error::{Damage, Result, StoreError};
pub use file_store::{FileRun, FileStore};
pub use lock::{LockInfo, RunLock};
pub use log::{EventLog, LogReader, ReadFrom, Repair, ScanStart};
pub use run_dir::{Layout, RunMeta};
pub use snapshot::Snapshot;

/// A run's state as a fold of its records, serializable so a snapshot can cache it.
///
/// Contract: folding records `1..=n` one by one equals folding `1..=k`, round-tripping the state
/// through serde, then folding `k+1..=n`.
pub trait Fold: Default + Serialize + DeserializeOwned {
    /// Applies one record.
    fn apply(&mut self, record: &Record);
}

impl Fold for RunState {
    fn apply(&mut self, record: &Record) {
        RunState::apply(self, record);
    }
}

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
    /// Why a snapshot that exists was not used (missing is not reported): unreadable, corrupt,
    /// or ahead of or inconsistent with the log. The whole log was replayed instead.
    pub snapshot_ignored: Option<String>,
    /// A damaged or unfinished tail: cut by the writer (append a `log_repaired` event saying
    /// so), or ignored by a reader (it may be a write in progress).
    pub repair: Option<Repair>,
}

/// A store of runs. Shaped so that a store on a database can implement it: no paths here.
pub trait Store {
    /// The writer's handle on one run; holds the run lock while it lives.
    type Run: RunHandle;
    /// Streams records.
    type Records: Iterator<Item = Result<Record>>;

    /// Creates run `meta.id` with its metadata and an empty log, and returns it locked.
    /// Errors: [`StoreError::AlreadyExists`] (retry with another id), [`StoreError::InvalidRunId`].
    fn create_run(&self, meta: &RunMeta) -> Result<Self::Run>;

    /// Takes the lock of an existing run. Call [`RunHandle::load_state`] before appending.
    /// Errors: [`StoreError::NotFound`], [`StoreError::AlreadyLive`].
    fn open_run(&self, id: &str) -> Result<Self::Run>;

    /// Every run id, sorted. A run whose creation was interrupted may be listed while
    /// [`Store::read_meta`] fails for it.
    fn list_runs(&self) -> Result<Vec<String>>;

    /// The metadata the run was created with.
    fn read_meta(&self, id: &str) -> Result<RunMeta>;

    /// The run's state, read only (no lock, nothing modified): snapshot plus the log after it.
    fn load_state<F: Fold>(&self, id: &str) -> Result<(F, LoadInfo)>;

    /// True when a live process holds the run's lock.
    fn is_live(&self, id: &str) -> Result<bool>;

    /// The run's records from `seq` on (1: all), read only, in constant memory.
    fn records_from(&self, id: &str, seq: u64) -> Result<Self::Records>;
}

/// The writer's handle on one run (it holds the run lock).
pub trait RunHandle {
    /// Streams records.
    type Records: Iterator<Item = Result<Record>>;

    /// The run id.
    fn id(&self) -> &str;

    /// Loads the state (snapshot plus the log after it). The first call after `open_run` verifies
    /// the log's tail and cuts a damaged one ([`LoadInfo::repair`]: append a `log_repaired`
    /// event); it must come before `append`. Errors: [`StoreError::Corrupt`],
    /// [`StoreError::SeqGap`] when damage is followed by valid records.
    fn load_state<F: Fold>(&mut self) -> Result<(F, LoadInfo)>;

    /// Appends `events` as one durable, all-or-nothing batch with timestamp `now`; returns their
    /// records. Errors: [`StoreError::NotLoaded`], [`StoreError::Poisoned`] after a failure.
    fn append(&mut self, events: &[Event], now: Timestamp) -> Result<Vec<Record>>;

    /// Caches `state`, which must be the fold of every record appended so far.
    fn save_snapshot<F: Fold>(&mut self, state: &F) -> Result<()>;

    /// Seq of the last record, once loaded (`None` before `load_state` after `open_run`).
    fn last_seq(&self) -> Option<u64>;

    /// The run's records from `seq` on, in constant memory.
    fn records_from(&self, seq: u64) -> Result<Self::Records>;
}
