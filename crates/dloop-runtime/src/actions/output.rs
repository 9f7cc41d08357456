//! Where action output goes: the run's output stream, and the per-action bookkeeping (hash,
//! excerpt, stderr tail) that becomes the log's `action_finished` record.
//!
//! The stream (`output.log` in the run folder, [`dloop_core::event::OUTPUT_STREAM`]) holds every
//! byte every action printed, stdout and stderr interleaved as they arrived, appended with one
//! `write` per chunk read from the pipes, so `tail -f` and `dloop output -f` see it live, and an
//! action that is stopped, killed or timed out keeps what it printed. One file per run, not one
//! per step: creating a file per step adds a metadata write to every step's `fdatasync`.
//!
//! Invariants:
//! - records point into the stream by offset and length: `action_started` says where an action's
//!   output will start (it is the stream's length when the intent is written, and nothing else
//!   writes in between), `action_finished` says where it started and how long it is;
//! - the stream is never synced per chunk. An output that fits the log's excerpt is kept whole in
//!   the log record too, so the stream need not be durable for it; a larger one is synced with
//!   one `fdatasync` before the record that points at it ([`StepOutput::finish`]);
//! - readers never trust a range blindly: [`read_range`] checks the length is there, and callers
//!   that need exact bytes of a small output check its SHA-256 (after a power loss the unsynced
//!   tail of the stream may be gone and later output appended at a lower offset).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dloop_core::event::{ActionResult, OUTPUT_STREAM};
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

/// The run's output stream, open for appending by the session that holds the run lock.
#[derive(Debug)]
pub struct OutputStream {
    path: PathBuf,
    file: File,
    len: u64,
}

impl OutputStream {
    /// Opens (creating, 0600) the stream of the run folder `run_dir`. A symlink in its place is
    /// refused (`O_NOFOLLOW`), so a planted link cannot make dloop write elsewhere. When the file
    /// is new, the folder is synced once, so a record naming it never outlives its entry.
    ///
    /// # Errors
    /// The file cannot be opened or created.
    pub fn open(run_dir: &Path) -> io::Result<Self> {
        let path = run_dir.join(OUTPUT_STREAM);
        let open = |create_new: bool| {
            OpenOptions::new()
                .append(true)
                .create_new(create_new)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
        };
        let file = match open(true) {
            Ok(file) => {
                File::open(run_dir)?.sync_all()?;
                file
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => open(false)?,
            Err(err) => return Err(err),
        };
        let len = file.metadata()?.len();
        Ok(Self { path, file, len })
    }

    /// The stream's length: where the next action's output starts.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was ever written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The stream's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// One action's output as it arrives: appended to the stream, hashed, and cut to the excerpt.
pub struct StepOutput<'a> {
    stream: &'a mut OutputStream,
    offset: u64,
    hasher: Sha256,
    bytes: u64,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    stderr_tail: VecDeque<u8>,
}

impl<'a> StepOutput<'a> {
    /// Starts an action's output at the stream's end.
    pub fn new(stream: &'a mut OutputStream) -> Self {
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
        self.stream.append(bytes)?;
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
            self.stream.sync()?;
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

/// Opens a run file for reading without following a symlink.
pub fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Reads `len` bytes at `offset` of the file at `path`; `None` when the file is shorter (the
/// range was lost, see the module docs).
///
/// # Errors
/// The file cannot be opened or read.
pub fn read_range(path: &Path, offset: u64, len: u64) -> io::Result<Option<Vec<u8>>> {
    let file = open_no_follow(path)?;
    if file.metadata()?.len() < offset.saturating_add(len) {
        return Ok(None);
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, offset)?;
    Ok(Some(bytes))
}

/// The last `limit` bytes of `[offset, offset + len)` of `path`, for captures of long outputs.
///
/// # Errors
/// The file cannot be opened or read.
pub fn read_range_tail(
    path: &Path,
    offset: u64,
    len: u64,
    limit: u64,
) -> io::Result<Option<Vec<u8>>> {
    let keep = len.min(limit);
    read_range(path, offset + (len - keep), keep)
}

/// The last `limit` bytes of a whole file (logs from before the stream: a file per output).
///
/// # Errors
/// The file cannot be opened or read.
pub fn read_file_tail(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut file = open_no_follow(path)?;
    let len = file.metadata()?.len();
    if len > limit {
        file.seek(SeekFrom::Start(len - limit))?;
    }
    let mut bytes = Vec::with_capacity(len.min(limit) as usize);
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// SHA-256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_appended_in_order_and_pointed_at_by_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut stream = OutputStream::open(dir.path()).expect("opens");
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
        let path = dir.path().join(OUTPUT_STREAM);
        let bytes = read_range(&path, 8, 3).expect("reads").expect("there");
        assert_eq!(bytes, b"two");
        assert_eq!(sha256_hex(&bytes), b.sha256);
        assert_eq!(
            read_range(&path, 8, 4).expect("reads"),
            None,
            "past the end"
        );
        // Reopened, the stream continues at its end.
        drop(stream);
        let stream = OutputStream::open(dir.path()).expect("reopens");
        assert_eq!(stream.len(), 11);
    }

    #[test]
    fn an_empty_output_names_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut stream = OutputStream::open(dir.path()).expect("opens");
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
        let dir = tempfile::tempdir().expect("tempdir");
        let mut stream = OutputStream::open(dir.path()).expect("opens");
        let mut out = StepOutput::new(&mut stream);
        out.write(Stream::Stdout, &vec![b'a'; 5000])
            .expect("writes");
        out.write(Stream::Stdout, b"END").expect("writes");
        let result = out.finish(Duration::ZERO).expect("finishes");
        assert!(!result.complete);
        assert!(result.excerpt.starts_with("aaa"));
        assert!(result.excerpt.ends_with("END"));
        assert!(result.excerpt.contains("bytes omitted"));
    }

    #[test]
    fn a_symlink_in_place_of_the_stream_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").expect("writes");
        std::os::unix::fs::symlink(&target, dir.path().join(OUTPUT_STREAM)).expect("links");
        assert!(OutputStream::open(dir.path()).is_err());
        assert_eq!(std::fs::read(&target).expect("reads"), b"keep");
    }
}
