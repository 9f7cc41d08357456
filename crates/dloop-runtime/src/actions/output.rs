//! Where action output goes: the run's output stream (the store's, [`OutputStream`]), and the
//! per-action bookkeeping (hash, excerpt, stderr tail) that becomes the log's `action_finished`
//! record.
//!
//! The stream holds every byte every action printed, stdout and stderr interleaved as they
//! arrived, appended with one `write` per chunk read from the pipes, so `tail -f` and
//! `dloop output -f` see it live, and an action that is stopped, killed or timed out keeps what it
//! printed. One stream per run, not a file per step: creating a file per step adds a metadata
//! write to every step's `fdatasync`.
//!
//! Invariants:
//! - records point into the stream by offset and length: `action_started` says where an action's
//!   output will start (it is the stream's length when the intent is written, and nothing else
//!   writes in between), `action_finished` says where it started and how long it is;
//! - the stream is never synced per chunk. An output that fits the log's excerpt is kept whole in
//!   the log record too, so the stream need not be durable for it; a larger one is synced with
//!   one `fdatasync` before the record that points at it ([`StepOutput::finish`]);
//! - readers never trust a range blindly: the store reads short past the stream's end, and
//!   callers that need exact bytes of a small output check its SHA-256 (after a power loss the
//!   unsynced tail of the stream may be gone and later output appended at a lower offset).

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use dloop_core::event::{ActionResult, OUTPUT_STREAM};
use dloop_store::OutputStream;
use sha2::{Digest, Sha256};

/// Outputs up to this size are kept whole in the log; larger ones keep head and tail.
pub const EXCERPT_LIMIT: usize = 4096;
const HEAD: usize = EXCERPT_LIMIT / 2;
const TAIL: usize = EXCERPT_LIMIT / 2;

/// Which pipe a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The action's standard output.
    Stdout,
    /// The action's standard error.
    Stderr,
}

/// One action's output as it arrives: appended to the stream, hashed, and cut to the excerpt.
pub struct StepOutput<'a> {
    stream: &'a mut dyn OutputStream,
    offset: u64,
    hasher: Sha256,
    bytes: u64,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    stderr_tail: VecDeque<u8>,
}

impl<'a> StepOutput<'a> {
    /// Starts an action's output at the stream's end.
    pub fn new(stream: &'a mut dyn OutputStream) -> Self {
        Self {
            offset: stream.len(),
            stream,
            hasher: Sha256::new(),
            bytes: 0,
            head: Vec::with_capacity(HEAD),
            tail: VecDeque::new(),
            stderr_tail: VecDeque::new(),
        }
    }

    /// Bytes so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where this output starts in the stream.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Takes one chunk: on disk (not synced) before this returns.
    ///
    /// # Errors
    /// The stream cannot be written.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        self.stream.append(bytes).map_err(io::Error::other)?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        let room = EXCERPT_LIMIT.saturating_sub(self.head.len());
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        push_tail(&mut self.tail, rest, EXCERPT_LIMIT);
        if stream == Stream::Stderr {
            push_tail(&mut self.stderr_tail, bytes, EXCERPT_LIMIT);
        }
        Ok(())
    }

    /// The result for the log. An output larger than the excerpt is synced first, so the record
    /// that points at it is never more durable than its bytes.
    ///
    /// # Errors
    /// The sync failed.
    pub fn finish(self, duration: Duration) -> io::Result<ActionResult> {
        let complete = self.bytes as usize <= EXCERPT_LIMIT;
        let excerpt = if complete {
            String::from_utf8_lossy(&self.head).into_owned()
        } else {
            self.stream.sync().map_err(io::Error::other)?;
            let head = &self.head[..HEAD.min(self.head.len())];
            let tail: Vec<u8> = self.tail.iter().copied().collect();
            let tail = &tail[tail.len().saturating_sub(TAIL)..];
            format!(
                "{}\n[... {} bytes omitted: `dloop output` prints all of it ...]\n{}",
                String::from_utf8_lossy(head),
                self.bytes as usize - head.len() - tail.len(),
                String::from_utf8_lossy(tail)
            )
        };
        let stderr: Vec<u8> = self.stderr_tail.into_iter().collect();
        let printed = self.bytes > 0;
        Ok(ActionResult {
            duration_ms: duration.as_millis() as u64,
            bytes: self.bytes,
            sha256: hex(&self.hasher.finalize()),
            excerpt,
            complete,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            output_path: if printed {
                OUTPUT_STREAM.to_owned()
            } else {
                String::new()
            },
            output_offset: printed.then_some(self.offset),
            ..ActionResult::default()
        })
    }
}

fn push_tail(tail: &mut VecDeque<u8>, bytes: &[u8], limit: usize) {
    let bytes = &bytes[bytes.len().saturating_sub(limit)..];
    let overflow = (tail.len() + bytes.len()).saturating_sub(limit);
    tail.drain(..overflow.min(tail.len()));
    tail.extend(bytes);
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// SHA-256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream in memory.
    #[derive(Debug, Default)]
    struct Memory(Vec<u8>);

    impl OutputStream for Memory {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn append(&mut self, bytes: &[u8]) -> dloop_store::Result<()> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
        fn sync(&mut self) -> dloop_store::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn outputs_are_appended_in_order_and_pointed_at_by_offset() {
        let mut stream = Memory::default();
        let mut first = StepOutput::new(&mut stream);
        first.write(Stream::Stdout, b"one\n").expect("writes");
        first.write(Stream::Stderr, b"err\n").expect("writes");
        let a = first.finish(Duration::ZERO).expect("finishes");
        let mut second = StepOutput::new(&mut stream);
        second.write(Stream::Stdout, b"two").expect("writes");
        let b = second.finish(Duration::ZERO).expect("finishes");
        assert_eq!((a.output_offset, a.bytes), (Some(0), 8));
        assert_eq!((b.output_offset, b.bytes), (Some(8), 3));
        assert_eq!(a.stderr, "err\n");
        assert!(a.complete && b.complete);
        assert_eq!(&stream.0[8..], b"two");
        assert_eq!(sha256_hex(b"two"), b.sha256);
    }

    #[test]
    fn an_empty_output_names_no_file() {
        let mut stream = Memory::default();
        let result = StepOutput::new(&mut stream)
            .finish(Duration::ZERO)
            .expect("finishes");
        assert_eq!(
            (result.output_path.as_str(), result.output_offset),
            ("", None)
        );
    }

    #[test]
    fn a_long_output_keeps_head_and_tail_in_the_excerpt() {
        let mut stream = Memory::default();
        let mut out = StepOutput::new(&mut stream);
        out.write(Stream::Stdout, &[b'a'; 5000]).expect("writes");
        out.write(Stream::Stdout, b"END").expect("writes");
        let result = out.finish(Duration::ZERO).expect("finishes");
        assert!(!result.complete);
        assert!(result.excerpt.starts_with("aaa"));
        assert!(result.excerpt.ends_with("END"));
        assert!(result.excerpt.contains("bytes omitted"));
    }
}
