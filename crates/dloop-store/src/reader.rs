//! [`LogReader`]: streams the records of `events.jsonl` without modifying it (no lock needed),
//! in constant memory, one line and one batch at a time.
//!
//! A reader may race the writer, so a line cut short at the end of the file is a write in
//! progress and ends the stream quietly, as does a bad last line (the writer cuts it on its
//! next open). Anything a crash cannot produce is refused exactly as the writer refuses it
//! ([`crate::scan`]): a damaged line with more after it, a log with no valid record.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use dloop_core::Record;

use crate::error::{Damage, Result, StoreError};
use crate::files::{self, Mode};
use crate::record::{checked_more, decode_line};
use crate::scan::{ScanStart, is_record_start, not_a_tail};

const READ_BUFFER: usize = 64 * 1024;

/// Streams a log's records from a point. Yields [`StoreError::Corrupt`] (and the like) when it
/// meets damage a crash cannot produce; stops quietly at a torn or bad last line.
#[derive(Debug)]
pub struct LogReader {
    reader: BufReader<File>,
    path: PathBuf,
    pos: u64,
    /// Byte offset and seq after the last whole batch read.
    committed: ScanStart,
    /// Records with a lower seq are skipped.
    min_seq: u64,
    /// The seq (and so the 1-based line number) of the next line.
    expected: u64,
    buf: Vec<u8>,
    batch: Vec<Record>,
    ready: VecDeque<Record>,
    done: bool,
}

impl LogReader {
    /// Opens `path` (never through a link) to stream the records with seq `min_seq` or later,
    /// reading from `start` (a batch boundary whose line holds `start.next_seq`).
    pub(crate) fn open(path: &Path, start: ScanStart, min_seq: u64) -> Result<Self> {
        let file = files::open(path, Mode::Read, "open")?;
        crate::fault::before_read(path).map_err(|e| StoreError::io("read", path, e))?;
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        reader
            .seek(SeekFrom::Start(start.offset))
            .map_err(|e| StoreError::io("seek", path, e))?;
        Ok(LogReader {
            reader,
            path: path.to_owned(),
            pos: start.offset,
            committed: start,
            min_seq,
            expected: start.next_seq,
            buf: Vec::with_capacity(1024),
            batch: Vec::new(),
            ready: VecDeque::new(),
            done: false,
        })
    }

    /// Where the records read so far end: a reader opened there continues (follow mode) once
    /// the records read so far are consumed.
    pub(crate) fn position(&self) -> ScanStart {
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
            let line = self.expected;
            let complete = self.buf.last() == Some(&b'\n');
            let body = if complete {
                &self.buf[..n - 1]
            } else {
                &self.buf[..]
            };
            // Whole one-line batches before the wanted seq are skipped by their checksum and
            // seq prefix alone, without parsing JSON (fast path for `logs` from a seq); a line
            // of a longer batch takes the full path, so `committed` stays on batch ends.
            if complete
                && self.batch.is_empty()
                && line < self.min_seq
                && seq_prefix(body) == Some(line)
                && checked_more(body) == Some(false)
            {
                self.expected += 1;
                self.committed = ScanStart {
                    offset: self.pos,
                    next_seq: self.expected,
                };
                continue;
            }
            let decoded = if complete {
                decode_line(body)
            } else {
                Err(Damage::Torn)
            };
            match decoded {
                Ok(d) if d.record.seq == line => {
                    self.expected += 1;
                    let more = d.more;
                    self.batch.push(d.record);
                    if !more {
                        self.committed = ScanStart {
                            offset: self.pos,
                            next_seq: self.expected,
                        };
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
                        line,
                        offset,
                        expected: line,
                        found: d.record.seq,
                    });
                }
                Err(damage) => {
                    self.done = true;
                    let torn = !complete;
                    let start_of_record = torn && is_record_start(&self.buf, line);
                    return self.damaged_tail(damage, offset, line, start_of_record);
                }
            }
        }
    }

    /// A damaged line at `offset`: the end of the stream if it is the log's last line and the
    /// log has a valid record (or it is the start of one), an error otherwise.
    fn damaged_tail(
        &mut self,
        damage: Damage,
        offset: u64,
        line: u64,
        start_of_record: bool,
    ) -> Result<()> {
        // A line without `\n` is what `read_until` returns at the end of the file only. Reading
        // on while a writer appends would see the rest of that line as more lines and cry
        // corruption, so a torn line ends the stream here.
        if damage != Damage::Torn {
            let n = self
                .read_line()
                .map_err(|e| StoreError::io("read", &self.path, e))?;
            if n > 0 {
                return Err(not_a_tail(&self.path, line, offset, damage));
            }
        }
        let has_record = self.committed.next_seq > 1 || !self.batch.is_empty();
        if !has_record && !start_of_record {
            return Err(StoreError::NoValidRecord {
                path: self.path.clone(),
                damage,
            });
        }
        Ok(())
    }
}

/// The seq of a line written by this store, read from its `{"seq":N` prefix.
fn seq_prefix(line: &[u8]) -> Option<u64> {
    let digits = line.strip_prefix(br#"{"seq":"#)?;
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..n]).ok()?.parse().ok()
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
