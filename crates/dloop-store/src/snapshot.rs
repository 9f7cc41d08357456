//! `state.json`: a cache of the fold at some seq, so resume replays only the log after it.
//!
//! # Format (version 2)
//!
//! ```text
//! {"seq":N,"log_offset":BYTES,"last_line":BYTES,"last_crc":"1a2b3c4d","state":<fold>,"checksum":"5e6f7a8b"}
//! ```
//!
//! | key          | meaning                                                              |
//! |--------------|----------------------------------------------------------------------|
//! | `seq`        | the last record folded into `state` (0: nothing)                     |
//! | `log_offset` | byte offset in `events.jsonl` just after record `seq` (a batch end)  |
//! | `last_line`  | byte offset of record `seq`'s line                                   |
//! | `last_crc`   | record `seq`'s line checksum (its `crc`)                             |
//! | `state`      | the fold, as its own serde encoding                                  |
//! | `checksum`   | always last: CRC32C of every byte before `,"checksum":`, 8 hex digits |
//!
//! `seq`, `last_line`, `log_offset` and `last_crc` let an open check, by reading one line, that
//! the log still holds the record the snapshot was taken at ([`crate::scan::check_mark`]); the
//! checksum makes a hand-edited snapshot fail to load rather than be believed (issue 7, F5).
//! Version 1 (`seq`, `log_offset`, `state` only) is ignored: the log is replayed once and a
//! version 2 snapshot written.
//!
//! Invariants: the snapshot may lag the log, never lead it. A missing, unreadable or
//! inconsistent snapshot is not an error: the caller replays the whole log and says why.

use std::io::ErrorKind;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::crash;
use crate::error::{Result, StoreError};
use crate::fault;
use crate::files::{self, Mode};
use crate::scan::Mark;

/// The file's name in the run folder.
pub(crate) const FILE_NAME: &str = "state.json";

const CHECKSUM_KEY: &[u8] = br#","checksum":""#;
/// `,"checksum":"` + 8 hex digits + `"}`.
const CHECKSUM_SUFFIX_LEN: usize = 13 + 8 + 2;

/// The contents of `state.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Snapshot<T> {
    /// The last record folded into `state`.
    pub(crate) seq: u64,
    /// Byte offset in the log just after record `seq`.
    pub(crate) log_offset: u64,
    /// Byte offset of record `seq`'s line.
    pub(crate) last_line: u64,
    /// Record `seq`'s checksum, as 8 hex digits.
    pub(crate) last_crc: String,
    /// The fold.
    pub(crate) state: T,
}

impl<T> Snapshot<T> {
    /// The log record the snapshot was taken at; `None` when `last_crc` is not hex.
    pub(crate) fn mark(&self) -> Option<Mark> {
        Some(Mark {
            seq: self.seq,
            line: self.last_line,
            end: self.log_offset,
            crc: u32::from_str_radix(&self.last_crc, 16).ok()?,
        })
    }
}

#[derive(Serialize)]
struct SnapshotRef<'a, T> {
    seq: u64,
    log_offset: u64,
    last_line: u64,
    last_crc: String,
    state: &'a T,
}

/// Writes `state.json` in `dir` atomically, with [`replace_file`]; the crash points
/// `snapshot_before_rename` and `snapshot_after_rename` sit between its steps 2-3 and 3-4.
pub(crate) fn write<T: Serialize>(dir: &Path, mark: Mark, state: &T) -> Result<()> {
    let path = dir.join(FILE_NAME);
    let mut bytes = serde_json::to_vec(&SnapshotRef {
        seq: mark.seq,
        log_offset: mark.end,
        last_line: mark.line,
        last_crc: format!("{:08x}", mark.crc),
        state,
    })
    .map_err(|source| StoreError::EncodeSnapshot {
        path: path.clone(),
        source,
    })?;
    // Invariant: a struct serializes as a JSON object, so the last byte is its closing brace.
    debug_assert_eq!(bytes.last(), Some(&b'}'));
    bytes.pop();
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(CHECKSUM_KEY);
    bytes.extend_from_slice(format!("{crc:08x}\"}}").as_bytes());
    replace_file(dir, FILE_NAME, &bytes, "snapshot")
}

/// Replaces (or creates) the file `name` in `dir` so that readers see the old or the new
/// contents, whole, and the new contents survive a power loss once this returns. Nothing is
/// written through a link: the temp file is created fresh with `O_NOFOLLOW`, and the rename
/// replaces the directory entry (a link there is replaced, its target untouched).
///
/// Durability steps:
/// 1. write `<name>.tmp` (mode 0600, created fresh) in the same folder;
/// 2. `fsync` it, so the rename never exposes a file whose data is not on disk;
/// 3. rename it over `<name>` (atomic);
/// 4. `fsync` the folder, so the rename itself survives a power loss.
///
/// `crash_prefix` names the crash points `<prefix>_before_rename` and `<prefix>_after_rename`.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8], crash_prefix: &str) -> Result<()> {
    let temp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    // Step 1. A temp file left by a crash is removed first (unlink never follows a link).
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("remove", &temp, e)),
    }
    let mut file = files::open(&temp, Mode::CreateNew, "create")?;
    fault::write_all(&mut file, &temp, bytes).map_err(|e| StoreError::io("write", &temp, e))?;
    // Step 2.
    fault::sync_all(&file, &temp).map_err(|e| StoreError::io("fsync", &temp, e))?;
    drop(file);
    crash::crash_point(&format!("{crash_prefix}_before_rename"));
    // Step 3.
    fault::rename(&temp, &target).map_err(|e| StoreError::io("rename", &temp, e))?;
    crash::crash_point(&format!("{crash_prefix}_after_rename"));
    // Step 4.
    files::sync_dir(dir)
}

/// Reads `state.json` from `dir`. `Ok(None)` when there is none; `Err(reason)` when it exists but
/// cannot be used (the caller replays the whole log and reports the reason). A link in its
/// place is an error of the store, not a reason to replay.
pub(crate) fn read<T: DeserializeOwned>(
    dir: &Path,
) -> Result<std::result::Result<Option<Snapshot<T>>, String>> {
    let path = dir.join(FILE_NAME);
    let bytes = match files::read_optional(&path) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(Ok(None)),
        Err(e @ StoreError::UnsafePath { .. }) => return Err(e),
        Err(e) => return Ok(Err(e.to_string())),
    };
    Ok(decode(&bytes)
        .map(Some)
        .map_err(|why| format!("{} {why}", path.display())))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<Snapshot<T>, String> {
    if bytes.len() < CHECKSUM_SUFFIX_LEN + 2 {
        return Err("is too short to be a snapshot".into());
    }
    let (body, suffix) = bytes.split_at(bytes.len() - CHECKSUM_SUFFIX_LEN);
    let digits = suffix
        .strip_prefix(CHECKSUM_KEY)
        .and_then(|rest| rest.strip_suffix(b"\"}"))
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| u32::from_str_radix(d, 16).ok())
        .ok_or("has no checksum (written by an older dloop, or edited)")?;
    if crc32c::crc32c(body) != digits {
        return Err("does not match its checksum (it was edited or damaged)".into());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("is not a valid snapshot: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read::<Vec<u32>>(dir.path()).expect("no link"), Ok(None));
        let mark = Mark {
            seq: 3,
            line: 100,
            end: 120,
            crc: 0xdead_beef,
        };
        write(dir.path(), mark, &vec![1u32, 2]).expect("writes");
        let snap = read::<Vec<u32>>(dir.path())
            .expect("no link")
            .expect("reads")
            .expect("exists");
        assert_eq!((snap.mark(), snap.state), (Some(mark), vec![1, 2]));
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
    }

    #[test]
    fn edited_or_old_snapshots_are_reported_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        write(dir.path(), Mark::default(), &vec![1u32]).expect("writes");
        let text = std::fs::read_to_string(&path).expect("read");
        for edited in [
            text.replace("[1]", "[7]"),
            r#"{"seq":0,"log_offset":0,"state":[1]}"#.to_owned(),
            "{\"seq\":".to_owned(),
        ] {
            std::fs::write(&path, &edited).expect("write");
            let why = read::<Vec<u32>>(dir.path())
                .expect("no link")
                .expect_err("not believed");
            assert!(why.contains("state.json"), "{why}");
        }
    }
}
