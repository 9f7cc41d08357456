//! The file store's output stream: `output.log` in the run folder, every byte every action of
//! the run printed, in the order it arrived (the format is the runtime's business: the store
//! keeps bytes and offsets).
//!
//! Invariants: the file is opened without following a link and must be a regular file (a
//! planted `output.log -> /etc/passwd` is refused, never appended to); appends are one `write`
//! each on an `O_APPEND` handle, visible to readers at once and durable only after
//! [`OutputStream::sync`]; a reader never reads past the end it sees, so a range lost to a power
//! failure reads short, never as another file's bytes.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::OutputStream;
use crate::error::{Result, StoreError};
use crate::fault;
use crate::files::{self, Mode};

/// The stream's file name in a run folder.
pub(crate) const FILE_NAME: &str = "output.log";

/// The writer's end of a run's output stream.
#[derive(Debug)]
pub(crate) struct FileOutput {
    path: PathBuf,
    file: File,
    len: u64,
}

impl FileOutput {
    /// Opens the stream of run folder `dir` for appending, creating it (and syncing the folder,
    /// so no record names a file whose entry a power failure could lose) on first use.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        let file = match files::open(&path, Mode::CreateNew, "create") {
            Ok(file) => {
                files::sync_dir(dir)?;
                file
            }
            Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
                files::open(&path, Mode::Append, "open")?
            }
            Err(e) => return Err(e),
        };
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("stat", &path, e))?
            .len();
        Ok(Self { path, file, len })
    }
}

impl OutputStream for FileOutput {
    fn len(&self) -> u64 {
        self.len
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        fault::write_all(&mut self.file, &self.path, bytes)
            .map_err(|e| StoreError::io("append to", &self.path, e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        fault::sync_data(&self.file, &self.path)
            .map_err(|e| StoreError::io("fdatasync", &self.path, e))
    }
}

/// Reads `[from, to)` of the stream of run folder `dir` (to its end when `to` is `None` or past
/// it); returns the bytes and the offset read up to. A run that never printed reads as empty.
pub(crate) fn read(dir: &Path, from: u64, to: Option<u64>) -> Result<(Vec<u8>, u64)> {
    let path = dir.join(FILE_NAME);
    let mut file = match files::open(&path, Mode::Read, "open") {
        Ok(file) => file,
        Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            return Ok((Vec::new(), from));
        }
        Err(e) => return Err(e),
    };
    fault::before_read(&path).map_err(|e| StoreError::io("read", &path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StoreError::io("stat", &path, e))?
        .len();
    let end = to.map_or(len, |t| t.min(len));
    if end <= from {
        return Ok((Vec::new(), from.max(end)));
    }
    let mut bytes = Vec::with_capacity((end - from) as usize);
    file.seek(SeekFrom::Start(from))
        .and_then(|_| (&mut file).take(end - from).read_to_end(&mut bytes))
        .map_err(|e| StoreError::io("read", &path, e))?;
    Ok((bytes, end))
}
