//! `events.jsonl`, the log that is the truth: [`EventLog`] appends batches (one `write`, one
//! `fdatasync`) and opens for writing (verify, cut a crash's torn tail, refuse anything else;
//! the rules are in [`crate::scan`]).
//!
//! Invariants kept here:
//! - Seqs are 1, 2, 3, ... one line per record, so record `seq` is line `seq` of the file.
//! - Only whole batches are visible: a batch is every line up to and including one without
//!   `_more` (see [`crate::record`]).
//! - The file is opened with `O_NOFOLLOW` ([`crate::files`]): a link in its place is refused.
//! - After a failed write or fsync the handle is poisoned; it never retries a sync.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use dloop_core::{Event, Record, Timestamp};

use crate::crash;
use crate::error::{Result, StoreError};
use crate::fault;
use crate::files::{self, Mode};
use crate::record::encode_into;
use crate::scan::{Mark, Repair, ScanStart, scan};

/// The encode buffer is kept across appends; one this large after a huge batch is released.
const KEEP_BUFFER: usize = 1 << 20;

/// The writer's handle on `events.jsonl` (`O_APPEND`). Only one may exist per run: the caller
/// holds the run lock.
#[derive(Debug)]
pub struct EventLog {
    file: File,
    path: PathBuf,
    mark: Mark,
    buf: Vec<u8>,
    poisoned: bool,
}

impl EventLog {
    /// Creates an empty log (fails if the file exists), mode 0600. The caller fsyncs the folder.
    pub fn create(path: &Path) -> Result<Self> {
        let file = files::open(path, Mode::CreateNew, "create")?;
        Ok(Self::from_parts(file, path, Mark::default()))
    }

    fn from_parts(file: File, path: &Path, mark: Mark) -> Self {
        Self {
            file,
            path: path.to_owned(),
            mark,
            buf: Vec::with_capacity(4096),
            poisoned: false,
        }
    }

    /// Opens the log for appending (the caller holds the run lock), verifying it from `start`
    /// (whose previous record is `prev`: `Mark::default()` at the beginning) and delivering
    /// every record after `start` to `on_record`. Returns the handle and, when a crash's torn
    /// tail was cut, the [`Repair`] (the caller appends a `log_repaired` event).
    ///
    /// Durability steps of a repair:
    /// 1. scan from `start` to find the end of the last whole batch;
    /// 2. `set_len` to that end;
    /// 3. `fsync` (size is metadata), so the cut survives a crash before the next append.
    ///
    /// Errors: [`StoreError::Corrupt`], [`StoreError::SeqGap`], [`StoreError::NoValidRecord`]
    /// for damage a crash cannot produce; nothing is modified then.
    pub fn open(
        path: &Path,
        start: ScanStart,
        on_record: impl FnMut(&Record),
    ) -> Result<(Self, Option<Repair>)> {
        let file = files::open(path, Mode::Append, "open")?;
        Self::open_file(file, path, start, Mark::default(), on_record)
    }

    pub(crate) fn open_file(
        file: File,
        path: &Path,
        start: ScanStart,
        prev: Mark,
        mut on_record: impl FnMut(&Record),
    ) -> Result<(Self, Option<Repair>)> {
        // Step 1.
        let outcome = scan(&file, path, start, prev, &mut on_record)?;
        if outcome.tail.is_some() {
            // Steps 2 and 3.
            file.set_len(outcome.mark.end)
                .map_err(|e| StoreError::io("truncate", path, e))?;
            fault::sync_all(&file, path).map_err(|e| StoreError::io("fsync", path, e))?;
        }
        Ok((Self::from_parts(file, path, outcome.mark), outcome.tail))
    }

    /// Appends `events` as one batch with consecutive seqs and timestamp `now`, and returns their
    /// records. Empty input writes nothing.
    ///
    /// Durability steps:
    /// 1. encode every line into the kept buffer (all but the last marked `_more`);
    /// 2. one `write_all` on the `O_APPEND` handle;
    /// 3. one `fdatasync`; only then is the batch acknowledged.
    ///
    /// If step 2 or 3 fails the handle is poisoned: this and every later call return an error
    /// ([`StoreError::Poisoned`] after the first). A partial write is cut by the next open.
    pub fn append_batch(&mut self, events: &[Event], now: Timestamp) -> Result<Vec<Record>> {
        if self.poisoned {
            return Err(StoreError::Poisoned {
                path: self.path.clone(),
            });
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::with_capacity(4096);
        }
        // Step 1.
        self.buf.clear();
        let mut records = Vec::with_capacity(events.len());
        let (mut last_line, mut last_crc) = (0, 0);
        for (i, event) in events.iter().enumerate() {
            let record = Record {
                seq: self.mark.seq + 1 + i as u64,
                ts: now,
                event: event.clone(),
            };
            let more = i + 1 < events.len();
            last_line = self.buf.len() as u64;
            last_crc =
                encode_into(&record, more, &mut self.buf).map_err(|source| StoreError::Encode {
                    path: self.path.clone(),
                    source,
                })?;
            records.push(record);
        }
        crash::crash_point("before_append");
        if crash::is_hit("mid_write") {
            let half = self.buf.len() / 2;
            let _ = self.file.write_all(&self.buf[..half]);
            crash::die();
        }
        // Step 2.
        if let Err(e) = fault::write_all(&mut self.file, &self.path, &self.buf) {
            self.poisoned = true;
            return Err(StoreError::io("append to", &self.path, e));
        }
        crash::crash_point("before_fsync");
        // Step 3. Never retried: after a failed fsync the page cache may have dropped the data.
        if let Err(e) = fault::sync_data(&self.file, &self.path) {
            self.poisoned = true;
            return Err(StoreError::io("fdatasync", &self.path, e));
        }
        crash::crash_point("after_fsync");
        self.mark = Mark {
            seq: self.mark.seq + events.len() as u64,
            line: self.mark.end + last_line,
            end: self.mark.end + self.buf.len() as u64,
            crc: last_crc,
        };
        Ok(records)
    }

    /// Seq of the last record (0 for an empty log).
    pub fn last_seq(&self) -> u64 {
        self.mark.seq
    }

    /// Byte length of the log's whole batches: where the next append lands (a snapshot's
    /// `log_offset`).
    pub fn end_offset(&self) -> u64 {
        self.mark.end
    }

    /// The log's folder was renamed (a run folder created under a temp name moved into place).
    pub(crate) fn moved_to(mut self, path: PathBuf) -> Self {
        self.path = path;
        self
    }

    /// The last record: what a snapshot remembers.
    pub(crate) fn mark(&self) -> Mark {
        self.mark
    }

    /// True after a failed write or fsync.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
