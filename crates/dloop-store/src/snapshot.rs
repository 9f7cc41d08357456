//! `state.json`: a cache of the fold at some seq, so resume replays only the log after it.
//!
//! # Format
//!
//! ```text
//! {"seq":N,"log_offset":BYTES,"state":<the fold as JSON>}
//! ```
//!
//! | key          | meaning                                                              |
//! |--------------|----------------------------------------------------------------------|
//! | `seq`        | the last record folded into `state` (0: nothing)                     |
//! | `log_offset` | byte offset in `events.jsonl` just after record `seq` (a batch end)  |
//! | `state`      | the fold, as its own serde encoding                                  |
//!
//! Invariants: the snapshot may lag the log, never lead it. A missing, unreadable or
//! inconsistent snapshot is not an error: the caller replays the whole log and says why.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::crash;
use crate::error::{Result, StoreError};

/// The file's name in the run folder.
pub const FILE_NAME: &str = "state.json";

/// The contents of `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot<T> {
    /// The last record folded into `state`.
    pub seq: u64,
    /// Byte offset in the log just after record `seq`.
    pub log_offset: u64,
    /// The fold.
    pub state: T,
}

#[derive(Serialize)]
struct SnapshotRef<'a, T> {
    seq: u64,
    log_offset: u64,
    state: &'a T,
}

/// Writes `state.json` in `dir` atomically, with [`replace_file`]; the crash points
/// `snapshot_before_rename` and `snapshot_after_rename` sit between its steps 2-3 and 3-4.
pub fn write<T: Serialize>(dir: &Path, seq: u64, log_offset: u64, state: &T) -> Result<()> {
    let bytes = serde_json::to_vec(&SnapshotRef {
        seq,
        log_offset,
        state,
    })
    .map_err(|source| StoreError::EncodeSnapshot {
        path: dir.join(FILE_NAME),
        source,
    })?;
    replace_file(dir, FILE_NAME, &bytes, "snapshot")
}

/// Replaces (or creates) the file `name` in `dir` so that readers see the old or the new
/// contents, whole, and the new contents survive a power loss once this returns.
///
/// Durability steps:
/// 1. write `<name>.tmp` (mode 0600, truncated) in the same folder;
/// 2. `fsync` it, so the rename never exposes a file whose data is not on disk;
/// 3. rename it over `<name>` (atomic);
/// 4. `fsync` the folder, so the rename itself survives a power loss.
///
/// `crash_prefix` names the crash points `<prefix>_before_rename` and `<prefix>_after_rename`.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8], crash_prefix: &str) -> Result<()> {
    let temp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    // Step 1.
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| StoreError::io("create", &temp, e))?;
    file.write_all(bytes)
        .map_err(|e| StoreError::io("write", &temp, e))?;
    // Step 2.
    file.sync_all()
        .map_err(|e| StoreError::io("fsync", &temp, e))?;
    drop(file);
    crash::crash_point(&format!("{crash_prefix}_before_rename"));
    // Step 3.
    std::fs::rename(&temp, &target).map_err(|e| StoreError::io("rename", &temp, e))?;
    crash::crash_point(&format!("{crash_prefix}_after_rename"));
    // Step 4.
    sync_dir(dir)
}

/// `fsync`s a folder (makes creations, renames and removals in it durable).
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync folder", dir, e))
}

/// Reads `state.json` from `dir`. `Ok(None)` when there is none; `Err(reason)` when it exists but
/// cannot be used (the caller replays the whole log and reports the reason).
pub fn read<T: DeserializeOwned>(dir: &Path) -> std::result::Result<Option<Snapshot<T>>, String> {
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{} is not a valid snapshot: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read::<Vec<u32>>(dir.path()), Ok(None));
        write(dir.path(), 3, 120, &vec![1u32, 2]).expect("writes");
        let snap = read::<Vec<u32>>(dir.path())
            .expect("reads")
            .expect("exists");
        assert_eq!(
            snap,
            Snapshot {
                seq: 3,
                log_offset: 120,
                state: vec![1, 2]
            }
        );
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
    }

    #[test]
    fn corrupt_snapshot_is_reported_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), b"{\"seq\":").expect("write");
        assert!(read::<Vec<u32>>(dir.path()).is_err());
    }
}
