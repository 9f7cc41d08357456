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
    /// A damaged line is followed by valid records: the log is corrupt and nothing guesses.
    #[error(
        "{} line {line} is damaged ({damage}) at byte {offset} and is followed by valid records; \
         refusing to guess. Inspect it or restore a backup",
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
}

impl StoreError {
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
