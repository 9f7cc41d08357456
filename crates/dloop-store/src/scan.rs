//! Verifying `events.jsonl`: what a crash can leave at its end (cut it) and what it cannot
//! (refuse, naming the line), and the O(1) check that a snapshot's last record is still there.
//!
//! # What is repaired, what is refused (issue 7, F1 F2 F4)
//!
//! A crash mid-append leaves at most a prefix of the one batch being written after the last
//! whole batch: zero or more valid lines marked `_more`, then possibly one line cut short. So:
//! - the log's **last** line, torn (no `\n`) or bad (checksum, JSON), is cut, together with the
//!   valid `_more` lines of its unfinished batch before it;
//! - a damaged line with **anything** after it is refused ([`StoreError::Corrupt`]): a crash
//!   cannot tear a line and then write more;
//! - a log with **no valid record** is refused ([`StoreError::NoValidRecord`]) unless what is
//!   there is the start of record 1 (a crash during the very first append);
//! - the record a snapshot was taken at is durable by construction (the snapshot is written
//!   after the append's fdatasync): a log shorter than the snapshot's offset, or a damaged line
//!   there, is refused ([`StoreError::LogBehindSnapshot`], [`StoreError::Corrupt`]).
//!
//! Line numbers are 1-based everywhere; record `seq` is on line `seq`.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use dloop_core::Record;

use crate::error::{Damage, Result, StoreError};
use crate::record::decode_line;

const READ_BUFFER: usize = 64 * 1024;

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

/// The last whole record of a log: what a snapshot remembers so the next open can check, by
/// reading one line, that the log still ends (at least) where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Mark {
    /// Its seq (0: the log was empty).
    pub(crate) seq: u64,
    /// Byte offset of its line.
    pub(crate) line: u64,
    /// Byte offset just after its line (the end of the whole batches).
    pub(crate) end: u64,
    /// Its line's checksum.
    pub(crate) crc: u32,
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanOutcome {
    /// The last record of the last whole batch (`seq` 0 when none).
    pub(crate) mark: Mark,
    /// A damaged or unfinished tail after `mark.end`, if any.
    pub(crate) tail: Option<Repair>,
}

/// Whether a torn line can be the start of record `seq` as this store writes it.
pub(crate) fn is_record_start(bytes: &[u8], seq: u64) -> bool {
    let prefix = format!("{{\"seq\":{seq}");
    bytes.starts_with(prefix.as_bytes()) || prefix.as_bytes().starts_with(bytes)
}

/// The error for a damaged line with more bytes after it.
pub(crate) fn not_a_tail(path: &Path, line: u64, offset: u64, damage: Damage) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        line,
        offset,
        damage,
        context: "and more lines follow it (a crash can only damage the last line)",
    }
}

/// Verifies the log from `start`, delivering every record of every whole batch to `on_record`.
/// Stops short of a damaged or unfinished tail that a crash can have produced (reported in
/// [`ScanOutcome::tail`]); errors on anything else (see the module doc).
pub(crate) fn scan(
    file: &File,
    path: &Path,
    start: ScanStart,
    prev: Mark,
    on_record: &mut dyn FnMut(&Record),
) -> Result<ScanOutcome> {
    crate::fault::before_read(path).map_err(|e| StoreError::io("read", path, e))?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    reader
        .seek(SeekFrom::Start(start.offset))
        .map_err(|e| StoreError::io("seek", path, e))?;
    let mut buf = Vec::with_capacity(1024);
    let mut pos = start.offset;
    let mut expected = start.next_seq;
    let mut batch: Vec<Record> = Vec::new();
    let mut mark = prev;
    // The first damaged line: (damage, offset, line, its bytes when torn).
    let mut damaged: Option<(Damage, u64, u64)> = None;
    let mut torn_bytes = Vec::new();
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
        let this_line = expected;
        if let Some((damage, offset, line)) = damaged {
            return Err(not_a_tail(path, line, offset, damage));
        }
        let complete = buf.last() == Some(&b'\n');
        if !complete {
            // `read_until` returns a line without `\n` only at the end of the file. Stop here:
            // a reader racing a writer would see the rest of this line as another line.
            damaged = Some((Damage::Torn, offset, this_line));
            torn_bytes = buf.clone();
            break;
        }
        match decode_line(&buf[..n - 1]) {
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
                    }
                    mark = Mark {
                        seq: expected - 1,
                        line: offset,
                        end: pos,
                        crc: decoded.crc,
                    };
                }
            }
        }
    }
    let tail = if pos > mark.end {
        if mark.seq == 0 {
            // Nothing valid at all: only the torn start of record 1, or valid `_more` lines of
            // the first batch, are what a crash leaves; anything else is not a log of ours.
            let crash_shaped = match &damaged {
                None => true,
                Some((Damage::Torn, _, _)) => !batch.is_empty() || is_record_start(&torn_bytes, 1),
                Some(_) => !batch.is_empty(),
            };
            if !crash_shaped {
                let (damage, _, _) = damaged.expect("not crash-shaped means damaged");
                return Err(StoreError::NoValidRecord {
                    path: path.to_owned(),
                    damage,
                });
            }
        }
        let (damage, line) = match damaged {
            // The unfinished batch starts before the damaged line: name the batch's first line.
            Some(_) if !batch.is_empty() => (
                Damage::IncompleteBatch {
                    records: batch.len() as u64,
                },
                mark.seq + 1,
            ),
            Some((damage, _, line)) => (damage, line),
            None => (
                Damage::IncompleteBatch {
                    records: batch.len() as u64,
                },
                mark.seq + 1,
            ),
        };
        Some(Repair {
            dropped_bytes: pos - mark.end,
            reason: damage.to_string(),
            damage,
            offset: mark.end,
            line,
        })
    } else {
        None
    };
    Ok(ScanOutcome { mark, tail })
}

/// What [`check_mark`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MarkCheck {
    /// The log still holds the marked record, intact, where the mark says.
    Valid,
    /// An intact record is there, but not the one marked: the snapshot belongs to another
    /// log. Rebuild from the log.
    Mismatch(String),
}

/// Checks, by reading one line, that the log at `path` still holds the record `mark` names
/// (seq, place and checksum). `snapshot` names the file the mark came from, for errors.
///
/// Errors: [`StoreError::LogBehindSnapshot`] when the log is shorter than the mark's end;
/// [`StoreError::Corrupt`] when the marked line is damaged (a durable record cannot be torn).
pub(crate) fn check_mark(
    file: &File,
    path: &Path,
    snapshot: &Path,
    mark: Mark,
) -> Result<MarkCheck> {
    let len = file
        .metadata()
        .map_err(|e| StoreError::io("stat", path, e))?
        .len();
    if len < mark.end {
        return Err(StoreError::LogBehindSnapshot {
            log: path.to_owned(),
            snapshot: snapshot.to_owned(),
            why: format!(
                "the log has {len} bytes, but record {} ended at byte {} when the snapshot was \
                 taken (records that were durable are gone)",
                mark.seq, mark.end
            ),
        });
    }
    if mark.seq == 0 {
        return Ok(if mark.end == 0 {
            MarkCheck::Valid
        } else {
            MarkCheck::Mismatch("an empty log's snapshot with a non-zero offset".into())
        });
    }
    if mark.line >= mark.end || mark.end - mark.line > 64 << 20 {
        return Ok(MarkCheck::Mismatch(
            "the snapshot's record place is impossible".into(),
        ));
    }
    let mut line = vec![0u8; (mark.end - mark.line) as usize];
    file.read_exact_at(&mut line, mark.line)
        .map_err(|e| StoreError::io("read", path, e))?;
    if mark.line > 0 {
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, mark.line - 1)
            .map_err(|e| StoreError::io("read", path, e))?;
        if byte[0] != b'\n' {
            return Ok(MarkCheck::Mismatch(format!(
                "byte {} is not a line end",
                mark.line - 1
            )));
        }
    }
    let decoded = match line.split_last() {
        Some((b'\n', body)) => decode_line(body),
        _ => Err(Damage::Torn),
    };
    match decoded {
        Err(damage) => Err(StoreError::Corrupt {
            path: path.to_owned(),
            line: mark.seq,
            offset: mark.line,
            damage,
            context: "and the snapshot was taken after it was durable (a crash cannot damage it)",
        }),
        Ok(d) if d.record.seq == mark.seq && d.crc == mark.crc && !d.more => Ok(MarkCheck::Valid),
        Ok(d) => Ok(MarkCheck::Mismatch(format!(
            "the line at byte {} holds record {} (checksum {:08x}), not record {} ({:08x})",
            mark.line, d.record.seq, d.crc, mark.seq, mark.crc
        ))),
    }
}
