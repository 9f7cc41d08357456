//! The store's errors: one `#[non_exhaustive]` enum, [`StoreError`], whose variants carry the run
//! id, path, line and byte offset a user needs to act, plus [`Damage`], what is wrong with one log
//! line.
//!
//! Invariant: a message never repeats its `#[source]`'s text (the CLI prints the whole chain).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What is wrong with one line of `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// The line has no trailing newline: a write that did not finish.
    Torn,
    /// The line does not end with `,"crc":"xxxxxxxx"}`.
    MissingChecksum,
    /// The checksum does not match the line's bytes.
    BadChecksum,
    /// The checksum matches but the line is not a record this version understands.
    BadJson(String),
    /// The last lines are a batch whose closing line never reached the disk.
    IncompleteBatch {
        /// How many whole records of the batch were written.
        records: u64,
    },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Torn => f.write_str("torn write: no trailing newline"),
            Self::MissingChecksum => f.write_str("no checksum"),
            Self::BadChecksum => f.write_str("bad checksum"),
            Self::BadJson(why) => write!(f, "not a valid record: {why}"),
            Self::IncompleteBatch { records } => {
                write!(
                    f,
                    "incomplete batch of {records} record(s) without its closing line"
                )
            }
        }
    }
}

/// Every error of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done ("open", "write", "fsync", ...).
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A damaged line that a crash cannot have produced (it is followed by more lines, or a
    /// snapshot was taken after it): the log is corrupt and nothing guesses.
    #[error(
        "{} line {line} is damaged ({damage}) at byte {offset} {context}; refusing to guess. \
         Inspect it or restore a backup",
        path.display()
    )]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line's first byte.
        offset: u64,
        /// What is wrong with it.
        damage: Damage,
        /// Why it is not a crash's torn tail ("and more lines follow it").
        context: &'static str,
    },
    /// A record's seq breaks the 1, 2, 3, ... sequence.
    #[error(
        "{} line {line} (byte {offset}) has seq {found} where {expected} was expected; \
         refusing to guess. Inspect it or restore a backup",
        path.display()
    )]
    SeqGap {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line's first byte.
        offset: u64,
        /// The seq the line should have.
        expected: u64,
        /// The seq it has.
        found: u64,
    },
    /// An earlier write or fsync on this log handle failed; it refuses all further writes.
    #[error("the log {} failed an earlier write or fsync and accepts no more writes; reopen the run", path.display())]
    Poisoned {
        /// The log file.
        path: PathBuf,
    },
    /// A record could not be encoded.
    #[error("cannot encode a record for {}", path.display())]
    Encode {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A run id that could escape the runtime folder or is not a valid name.
    #[error(
        "`{id}` is not a valid run id (letters, digits, `_`, `.`, `-`; starting with a letter or digit)"
    )]
    InvalidRunId {
        /// The id as given.
        id: String,
    },
    /// `create_run` found a run with this id already.
    #[error("run `{run_id}` already exists")]
    AlreadyExists {
        /// The run id.
        run_id: String,
    },
    /// `open_run` (or a read) found no such run.
    #[error("no run `{run_id}`")]
    NotFound {
        /// The run id.
        run_id: String,
    },
    /// Another process (or handle) holds the run lock.
    #[error("run `{run_id}` is live: another process holds its lock{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyLive {
        /// The run id.
        run_id: String,
        /// The holder's pid, as it recorded it (for `dloop stop`).
        pid: Option<u32>,
    },
    /// `run.json` is missing fields or is not JSON.
    #[error("cannot read {}", path.display())]
    BadMeta {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// `append` or `save_snapshot` before `load_state` on an opened run.
    #[error("run `{run_id}` was opened but its log was not loaded; call load_state first")]
    NotLoaded {
        /// The run id.
        run_id: String,
    },
    /// A snapshot could not be encoded.
    #[error("cannot encode the snapshot {}", path.display())]
    EncodeSnapshot {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The log holds no valid record and its content is not the torn start of a first batch:
    /// cutting it would erase a run (or a foreign file), so nothing is guessed.
    #[error(
        "{} has no valid record: line 1 is damaged ({damage}); refusing to guess. Inspect it \
         or restore a backup",
        path.display()
    )]
    NoValidRecord {
        /// The log file.
        path: PathBuf,
        /// What is wrong with line 1.
        damage: Damage,
    },
    /// The log is shorter than the snapshot says it was, or the record the snapshot was taken
    /// at is damaged: records that were durable are gone, and re-running them is not an option.
    #[error(
        "{} does not hold what {} says it held: {why}; refusing to guess. Inspect it or \
         restore a backup",
        log.display(),
        snapshot.display()
    )]
    LogBehindSnapshot {
        /// The log file.
        log: PathBuf,
        /// The snapshot file.
        snapshot: PathBuf,
        /// What does not match.
        why: String,
    },
    /// The run's log is there but its `run.json` is not.
    #[error(
        "run `{run_id}` has a log but {} is missing; its definition is gone, so it can be \
         inspected but not resumed",
        path.display()
    )]
    MetaMissing {
        /// The run id.
        run_id: String,
        /// The missing file.
        path: PathBuf,
    },
    /// `run.json` does not match its own hash or the hash the log recorded at the start.
    #[error("{} was changed after the run started: {why}; refusing to use it", path.display())]
    TamperedMeta {
        /// The file.
        path: PathBuf,
        /// What does not match.
        why: String,
    },
    /// A run file or folder is a symbolic link, not a plain file or folder, or not owned by the
    /// user: dloop never follows one, so a run folder cannot make it write elsewhere.
    #[error("{} {why}; dloop does not follow or write through it", path.display())]
    UnsafePath {
        /// The file or folder.
        path: PathBuf,
        /// What it is ("is a symbolic link", "is owned by uid 0").
        why: String,
    },
    /// The writer's claim on the run is gone (its lock file was deleted or replaced): another
    /// process may now write the run, so this handle refuses every further write.
    #[error("lost the claim on run `{run_id}`: {why}; stopping so two writers never share a log")]
    ClaimLost {
        /// The run id.
        run_id: String,
        /// What happened to the claim.
        why: String,
    },
    /// A database store (PostgreSQL) failed, could not be reached within its retries, or has a
    /// schema this version cannot use; `what` says which and what to do.
    #[error("database: {what}")]
    Database {
        /// What failed, and the way out when there is one.
        what: String,
        /// The driver's error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A blob name that is not a plain file name (it could escape the run).
    #[error("`{name}` is not a valid blob name (letters, digits, `_`, `.`, `-`; no `..`)")]
    InvalidBlobName {
        /// The name as given.
        name: String,
    },
}

/// What kind of failure a [`StoreError`] is, for callers that pick a reaction (an exit code)
/// without matching every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Not `#[non_exhaustive]`: callers match every kind, so a new one makes them choose a
// reaction (an exit code) instead of falling into a catch-all arm.
pub enum StoreErrorKind {
    /// No such run, or an id or name that cannot be one: the caller asked for something wrong.
    NotFound,
    /// The run exists already (`create_run`).
    AlreadyExists,
    /// Another process holds the run (`open_run`).
    Busy,
    /// The stored data is damaged or was changed behind dloop's back; nothing was modified.
    Corrupt,
    /// A run file is a link or foreign-owned; nothing was read or written through it.
    Unsafe,
    /// The writer lost its claim on the run.
    ClaimLost,
    /// Reading or writing storage failed (disk full, permissions, a failed fsync).
    Io,
    /// A caller broke the store's contract (append before load, a record that cannot encode).
    Internal,
}

impl StoreError {
    /// The kind of failure. The match names every variant, so a new one cannot ship without a
    /// kind (and so an exit code).
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            Self::NotFound { .. } | Self::InvalidRunId { .. } | Self::InvalidBlobName { .. } => {
                StoreErrorKind::NotFound
            }
            Self::AlreadyExists { .. } => StoreErrorKind::AlreadyExists,
            Self::AlreadyLive { .. } => StoreErrorKind::Busy,
            Self::Corrupt { .. }
            | Self::SeqGap { .. }
            | Self::NoValidRecord { .. }
            | Self::LogBehindSnapshot { .. }
            | Self::TamperedMeta { .. }
            | Self::MetaMissing { .. }
            | Self::BadMeta { .. } => StoreErrorKind::Corrupt,
            Self::UnsafePath { .. } => StoreErrorKind::Unsafe,
            Self::ClaimLost { .. } => StoreErrorKind::ClaimLost,
            Self::Io { .. } | Self::Poisoned { .. } | Self::Database { .. } => StoreErrorKind::Io,
            Self::NotLoaded { .. } | Self::Encode { .. } | Self::EncodeSnapshot { .. } => {
                StoreErrorKind::Internal
            }
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
