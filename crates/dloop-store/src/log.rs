//! `events.jsonl`, the log that is the truth: [`EventLog`] appends batches (one `write`, one
//! `fdatasync`) and opens for writing (verify, cut a damaged tail, refuse damage in the middle);
//! [`scan_read_only`] and [`LogReader`] read without ever modifying the file.
//!
//! Invariants kept here:
//! - Seqs are 1, 2, 3, ... one line per record, so record `seq` is line `seq` of the file.
//! - Only whole batches are visible: a batch is every line up to and including one without
//!   `_more` (see [`crate::record`]). Trailing lines of an unfinished batch are cut (writer) or
//!   ignored (readers) like a torn line.
//! - A damaged line followed by a line with a valid checksum is corruption: refuse, never guess.
//! - After a failed write or fsync the handle is poisoned; it never retries a sync.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use dloop_core::{Event, Record, Timestamp};

use crate::crash;
use crate::error::{Damage, Result, StoreError};
use crate::record::{decode_line, encode_into, has_valid_checksum};

const READ_BUFFER: usize = 64 * 1024;
/// The encode buffer is kept across appends; one this large after a huge batch is released.
const KEEP_BUFFER: usize = 1 << 20;

/// Where a scan starts: byte `offset` of the log, whose line should hold `next_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanStart {
    /// Byte offset of a line start (0, or just after a `\n`).
    pub offset: u64,
    /// The seq the line at `offset` must have.
    pub next_seq: u64,
}

impl ScanStart {
    /// The start of the log.
    pub const BEGINNING: Self = Self {
        offset: 0,
        next_seq: 1,
    };
}

/// A damaged tail found on open: cut (writer) or ignored (readers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Bytes after the last whole batch.
    pub dropped_bytes: u64,
    /// What was wrong, for the `log_repaired` event.
    pub reason: String,
    /// The same, as data.
    pub damage: Damage,
    /// Byte offset where the dropped bytes began (the new length of the log).
    pub offset: u64,
    /// 1-based line number of the first dropped line.
    pub line: u64,
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Seq of the last record of the last whole batch (0 when none).
    pub last_seq: u64,
    /// Byte offset just after that batch: where the next append lands.
    pub end: u64,
    /// Records delivered to the callback.
    pub records: u64,
    /// A damaged or unfinished tail after `end`, if any.
    pub tail: Option<Repair>,
}

/// Whether a snapshot's `(log_offset, seq)` is a valid place to resume scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumePoint {
    /// The byte before `offset` is `\n` and the line at `offset` has seq `next_seq` (or is EOF).
    Valid,
    /// It is not; the reason says why. Replay from the beginning instead.
    Invalid(String),
}

/// Checks that `start` is a line boundary holding `start.next_seq` (or the end of the log), in
/// constant time: this is what lets resume skip the log before the snapshot.
pub fn check_resume_point(path: &Path, start: ScanStart) -> Result<ResumePoint> {
    if start.offset == 0 {
        return Ok(if start.next_seq == 1 {
            ResumePoint::Valid
        } else {
            ResumePoint::Invalid("offset 0 but seq is not 1".into())
        });
    }
    let file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StoreError::io("stat", path, e))?
        .len();
    if start.offset > len {
        return Ok(ResumePoint::Invalid(format!(
            "snapshot offset {} is past the end of the log ({len} bytes)",
            start.offset
        )));
    }
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, start.offset - 1)
        .map_err(|e| StoreError::io("read", path, e))?;
    if byte[0] != b'\n' {
        return Ok(ResumePoint::Invalid(format!(
            "byte {} is not a line end",
            start.offset - 1
        )));
    }
    if start.offset == len {
        return Ok(ResumePoint::Valid);
    }
    let mut reader = BufReader::with_capacity(4096, &file);
    reader
        .seek(SeekFrom::Start(start.offset))
        .map_err(|e| StoreError::io("seek", path, e))?;
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .map_err(|e| StoreError::io("read", path, e))?;
    match seq_prefix(&line) {
        Some(seq) if seq == start.next_seq => Ok(ResumePoint::Valid),
        // A torn line at the offset is the log's business (the scan cuts it), not the snapshot's.
        _ if !line.ends_with(b"\n") => Ok(ResumePoint::Valid),
        found => Ok(ResumePoint::Invalid(format!(
            "the line at byte {} has seq {found:?}, not {}",
            start.offset, start.next_seq
        ))),
    }
}

/// The seq of a line written by this store, read from its `{"seq":N` prefix without parsing the
/// rest (no checksum check).
fn seq_prefix(line: &[u8]) -> Option<u64> {
    let digits = line.strip_prefix(br#"{"seq":"#)?;
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..n]).ok()?.parse().ok()
}

/// Verifies the log from `start`, delivering every record of every whole batch to `on_record`.
/// Stops short of a damaged or unfinished tail (reported in [`ScanOutcome::tail`]); errors with
/// [`StoreError::Corrupt`] or [`StoreError::SeqGap`] when damage is followed by valid records.
fn scan(
    file: &File,
    path: &Path,
    start: ScanStart,
    on_record: &mut dyn FnMut(&Record),
) -> Result<ScanOutcome> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    reader
        .seek(SeekFrom::Start(start.offset))
        .map_err(|e| StoreError::io("seek", path, e))?;
    let mut buf = Vec::with_capacity(1024);
    let mut pos = start.offset;
    let mut line_no = start.next_seq;
    let mut expected = start.next_seq;
    let mut batch: Vec<Record> = Vec::new();
    let mut out = ScanOutcome {
        last_seq: start.next_seq.saturating_sub(1),
        end: start.offset,
        records: 0,
        tail: None,
    };
    // First damaged line: (damage, offset, line).
    let mut damaged: Option<(Damage, u64, u64)> = None;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| StoreError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        let offset = pos;
        pos += n as u64;
        let this_line = line_no;
        line_no += 1;
        let complete = buf.last() == Some(&b'\n');
        let body = if complete { &buf[..n - 1] } else { &buf[..] };
        if let Some((damage, offset, line)) = &damaged {
            if complete && has_valid_checksum(body) {
                return Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    line: *line,
                    offset: *offset,
                    damage: damage.clone(),
                });
            }
            continue;
        }
        if !complete {
            // A line without `\n` is what `read_until` returns at end of file only. Stop here:
            // reading on while a writer appends would see the rest of this line as a separate
            // fragment, then valid records after it, and cry corruption.
            damaged = Some((Damage::Torn, offset, this_line));
            break;
        }
        match decode_line(body) {
            Err(damage) => damaged = Some((damage, offset, this_line)),
            Ok(decoded) => {
                if decoded.record.seq != expected {
                    return Err(StoreError::SeqGap {
                        path: path.to_owned(),
                        line: this_line,
                        offset,
                        expected,
                        found: decoded.record.seq,
                    });
                }
                expected += 1;
                let more = decoded.more;
                batch.push(decoded.record);
                if !more {
                    for record in batch.drain(..) {
                        on_record(&record);
                        out.records += 1;
                    }
                    out.last_seq = expected - 1;
                    out.end = pos;
                }
            }
        }
    }
    if pos > out.end {
        let (damage, line) = match damaged {
            // The unfinished batch starts before the damaged line: name the batch's first line.
            Some(_) if !batch.is_empty() => (
                Damage::IncompleteBatch {
                    records: batch.len() as u64,
                },
                out.last_seq + 1,
            ),
            Some((damage, _, line)) => (damage, line),
            None => (
                Damage::IncompleteBatch {
                    records: batch.len() as u64,
                },
                out.last_seq + 1,
            ),
        };
        out.tail = Some(Repair {
            dropped_bytes: pos - out.end,
            reason: damage.to_string(),
            damage,
            offset: out.end,
            line,
        });
    }
    Ok(out)
}

/// Reads the log from `start` without modifying it (no lock needed), delivering every record of
/// every whole batch. A damaged or unfinished tail is reported in [`ScanOutcome::tail`] and left
/// alone: it may be a write in progress.
pub fn scan_read_only(
    path: &Path,
    start: ScanStart,
    mut on_record: impl FnMut(&Record),
) -> Result<ScanOutcome> {
    let file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    scan(&file, path, start, &mut on_record)
}

/// The writer's handle on `events.jsonl` (`O_APPEND`). Only one may exist per run: the caller
/// holds the run lock.
#[derive(Debug)]
pub struct EventLog {
    file: File,
    path: PathBuf,
    next_seq: u64,
    end: u64,
    buf: Vec<u8>,
    poisoned: bool,
}

impl EventLog {
    /// Creates an empty log (fails if the file exists), mode 0600. The caller fsyncs the folder.
    pub fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::io("create", path, e))?;
        Ok(Self::from_parts(file, path, 1, 0))
    }

    fn from_parts(file: File, path: &Path, next_seq: u64, end: u64) -> Self {
        Self {
            file,
            path: path.to_owned(),
            next_seq,
            end,
            buf: Vec::with_capacity(4096),
            poisoned: false,
        }
    }

    /// Opens the log for appending (the caller holds the run lock), verifying it from `start`
    /// (check it first with [`check_resume_point`]) and delivering every record after `start`
    /// to `on_record`. Returns the handle and, when a damaged last line or unfinished batch was
    /// cut, the [`Repair`] (the caller appends a `log_repaired` event).
    ///
    /// Durability steps of a repair:
    /// 1. scan from `start` to find the end of the last whole batch;
    /// 2. `set_len` to that end;
    /// 3. `fsync` (size is metadata), so the cut survives a crash before the next append.
    ///
    /// Errors: [`StoreError::Corrupt`] / [`StoreError::SeqGap`] when damage is followed by valid
    /// records; nothing is modified then.
    pub fn open(
        path: &Path,
        start: ScanStart,
        mut on_record: impl FnMut(&Record),
    ) -> Result<(Self, Option<Repair>)> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| StoreError::io("open", path, e))?;
        // Step 1.
        let outcome = scan(&file, path, start, &mut on_record)?;
        if outcome.tail.is_some() {
            // Steps 2 and 3.
            file.set_len(outcome.end)
                .map_err(|e| StoreError::io("truncate", path, e))?;
            file.sync_all()
                .map_err(|e| StoreError::io("fsync", path, e))?;
        }
        Ok((
            Self::from_parts(file, path, outcome.last_seq + 1, outcome.end),
            outcome.tail,
        ))
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
        for (i, event) in events.iter().enumerate() {
            let record = Record {
                seq: self.next_seq + i as u64,
                ts: now,
                event: event.clone(),
            };
            let more = i + 1 < events.len();
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
        if let Err(e) = self.file.write_all(&self.buf) {
            self.poisoned = true;
            return Err(StoreError::io("append to", &self.path, e));
        }
        crash::crash_point("before_fsync");
        // Step 3. Never retried: after a failed fsync the page cache may have dropped the data.
        if let Err(e) = self.file.sync_data() {
            self.poisoned = true;
            return Err(StoreError::io("fdatasync", &self.path, e));
        }
        crash::crash_point("after_fsync");
        self.next_seq += events.len() as u64;
        self.end += self.buf.len() as u64;
        Ok(records)
    }

    /// Seq of the last record (0 for an empty log).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Byte length of the log's whole batches: where the next append lands (a snapshot's
    /// `log_offset`).
    pub fn end_offset(&self) -> u64 {
        self.end
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

/// Where [`LogReader`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// A byte offset from an earlier [`LogReader::offset`] (follow mode), or 0.
    Offset(u64),
    /// The first record with this seq or a later one.
    Seq(u64),
}

/// Streams the records of a log in constant memory (one line and one batch at a time), without
/// modifying it. Stops quietly at a damaged or unfinished tail (it may be a write in progress);
/// yields [`StoreError::Corrupt`] when damage is followed by valid records.
#[derive(Debug)]
pub struct LogReader {
    reader: BufReader<File>,
    path: PathBuf,
    pos: u64,
    committed: u64,
    min_seq: u64,
    expected: Option<u64>,
    buf: Vec<u8>,
    batch: Vec<Record>,
    ready: std::collections::VecDeque<Record>,
    done: bool,
}

/// Opens `path` for streaming from `from`.
pub fn read_from(path: &Path, from: ReadFrom) -> Result<LogReader> {
    let file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let (offset, min_seq) = match from {
        ReadFrom::Offset(o) => (o, 0),
        ReadFrom::Seq(s) => (0, s),
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    reader
        .seek(SeekFrom::Start(offset))
        .map_err(|e| StoreError::io("seek", path, e))?;
    Ok(LogReader {
        reader,
        path: path.to_owned(),
        pos: offset,
        committed: offset,
        min_seq,
        expected: None,
        buf: Vec::with_capacity(1024),
        batch: Vec::new(),
        ready: Default::default(),
        done: false,
    })
}

impl LogReader {
    /// Byte offset just after the last whole batch read: pass it to [`ReadFrom::Offset`] to
    /// continue (follow mode) once the records read so far are consumed.
    pub fn offset(&self) -> u64 {
        self.committed
    }

    fn read_line(&mut self) -> io::Result<usize> {
        self.buf.clear();
        self.reader.read_until(b'\n', &mut self.buf)
    }

    /// Reads lines until a batch is complete, the end, or an error.
    fn fill(&mut self) -> Result<()> {
        loop {
            let n = self
                .read_line()
                .map_err(|e| StoreError::io("read", &self.path, e))?;
            if n == 0 {
                self.done = true;
                return Ok(());
            }
            let offset = self.pos;
            self.pos += n as u64;
            let complete = self.buf.last() == Some(&b'\n');
            let body = if complete {
                &self.buf[..n - 1]
            } else {
                &self.buf[..]
            };
            // Lines before the wanted seq are skipped by their prefix, unverified (fast path for
            // `logs` from a seq); a line without a readable prefix gets the full check.
            if complete
                && self.batch.is_empty()
                && let Some(seq) = seq_prefix(body)
                && seq < self.min_seq
                && has_valid_checksum(body)
            {
                self.expected = Some(seq + 1);
                self.committed = self.pos;
                continue;
            }
            let decoded = if complete {
                decode_line(body)
            } else {
                Err(Damage::Torn)
            };
            match decoded {
                Ok(d) if self.expected.is_none_or(|e| e == d.record.seq) => {
                    self.expected = Some(d.record.seq + 1);
                    let more = d.more;
                    self.batch.push(d.record);
                    if !more {
                        self.committed = self.pos;
                        self.ready
                            .extend(self.batch.drain(..).filter(|r| r.seq >= self.min_seq));
                        if !self.ready.is_empty() {
                            return Ok(());
                        }
                    }
                }
                Ok(d) => {
                    self.done = true;
                    return Err(StoreError::SeqGap {
                        path: self.path.clone(),
                        line: self.expected.unwrap_or(0),
                        offset,
                        expected: self.expected.unwrap_or(0),
                        found: d.record.seq,
                    });
                }
                // End of file inside a line: a torn tail or a write in progress (see `scan`).
                Err(Damage::Torn) => {
                    self.done = true;
                    return Ok(());
                }
                Err(damage) => {
                    self.done = true;
                    // Damage is a tail unless a valid line follows.
                    loop {
                        let n = self
                            .read_line()
                            .map_err(|e| StoreError::io("read", &self.path, e))?;
                        if n == 0 {
                            return Ok(());
                        }
                        if self.buf.last() == Some(&b'\n') && has_valid_checksum(&self.buf[..n - 1])
                        {
                            return Err(StoreError::Corrupt {
                                path: self.path.clone(),
                                line: self.expected.unwrap_or(0),
                                offset,
                                damage,
                            });
                        }
                    }
                }
            }
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(r) = self.ready.pop_front() {
            return Some(Ok(r));
        }
        if self.done {
            return None;
        }
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        self.ready.pop_front().map(Ok)
    }
}
