//! Opening run files and folders without ever following a link (issue 7, F3).
//!
//! A run folder can come from anywhere (a repository checkout, a copied backup), so its entries
//! are not trusted: every file is opened with `O_NOFOLLOW | O_NONBLOCK` and must then be a
//! regular file; every folder is checked with `lstat` to be a real folder owned by the user.
//! A link is refused with [`StoreError::UnsafePath`] naming it, so `events.jsonl -> /etc/passwd`
//! can never make dloop cut or append to the target.
//!
//! Invariant: no function here creates or opens anything through a symbolic link in its last
//! component; the folders above are checked by [`check_dir`] before their files are opened.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::OnceLock;

use crate::error::{Result, StoreError};

/// How a run file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Read only.
    Read,
    /// Read and append (`O_APPEND`); the file must exist.
    Append,
    /// Read and write in place; created (0600) when missing.
    ReadWriteCreate,
    /// Read and append; the file must not exist (created 0600).
    CreateNew,
}

/// Opens the run file `path` in `mode`, never through a link, and checks it is a regular file.
/// `op` names the operation in errors ("open", "create").
///
/// Errors: [`StoreError::UnsafePath`] for a link or a non-file; [`StoreError::Io`] otherwise
/// (a missing file keeps `ErrorKind::NotFound` as its source).
pub(crate) fn open(path: &Path, mode: Mode, op: &'static str) -> Result<File> {
    let mut options = OpenOptions::new();
    match mode {
        Mode::Read => options.read(true),
        Mode::Append => options.read(true).append(true),
        Mode::ReadWriteCreate => options
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600),
        Mode::CreateNew => options.read(true).append(true).create_new(true).mode(0o600),
    };
    // O_NONBLOCK: a FIFO planted in place of a file must not hang the open; it has no effect
    // on regular files.
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = options.open(path).map_err(|e| classify(op, path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| StoreError::io("stat", path, e))?;
    if !meta.is_file() {
        return Err(StoreError::UnsafePath {
            path: path.to_owned(),
            why: "is not a regular file".into(),
        });
    }
    Ok(file)
}

/// Reads the whole run file `path` (never through a link). `Ok(None)` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut file = match open(path, Mode::Read, "open") {
        Ok(f) => f,
        Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    crate::fault::before_read(path).map_err(|e| StoreError::io("read", path, e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("read", path, e))?;
    Ok(Some(bytes))
}

/// An open error, with `ELOOP` (the last component is a link) named for what it is.
fn classify(op: &'static str, path: &Path, e: io::Error) -> StoreError {
    if e.raw_os_error() == Some(libc::ELOOP) {
        StoreError::UnsafePath {
            path: path.to_owned(),
            why: "is a symbolic link".into(),
        }
    } else {
        StoreError::io(op, path, e)
    }
}

/// Checks that `dir` is a real folder (not a link) owned by the user. `Ok(false)` when it does
/// not exist.
pub(crate) fn check_dir(dir: &Path) -> Result<bool> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io("stat", dir, e)),
    };
    if meta.file_type().is_symlink() {
        return Err(StoreError::UnsafePath {
            path: dir.to_owned(),
            why: "is a symbolic link".into(),
        });
    }
    if !meta.is_dir() {
        return Err(StoreError::UnsafePath {
            path: dir.to_owned(),
            why: "is not a folder".into(),
        });
    }
    if let Some(uid) = current_uid()
        && meta.uid() != uid
    {
        return Err(StoreError::UnsafePath {
            path: dir.to_owned(),
            why: format!("is owned by uid {}, not by you (uid {uid})", meta.uid()),
        });
    }
    Ok(true)
}

/// The effective uid of this process, read from `/proc/self` (the workspace allows no `unsafe`
/// for `geteuid`). `None` where there is no procfs: the ownership check is then skipped, the
/// link checks are not.
fn current_uid() -> Option<u32> {
    static UID: OnceLock<Option<u32>> = OnceLock::new();
    *UID.get_or_init(|| std::fs::metadata("/proc/self").ok().map(|m| m.uid()))
}

/// `fsync`s a folder (makes creations, renames and removals in it durable).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    crate::fault::sync_dir(dir).map_err(|e| StoreError::io("fsync folder", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_refused_and_targets_untouched() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("target");
        std::fs::write(&target, b"precious").expect("write");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        for mode in [
            Mode::Read,
            Mode::Append,
            Mode::ReadWriteCreate,
            Mode::CreateNew,
        ] {
            let err = open(&link, mode, "open").expect_err("a link is refused");
            assert!(
                matches!(&err, StoreError::UnsafePath { .. } | StoreError::Io { .. }),
                "{err:?}"
            );
        }
        assert!(matches!(
            open(&link, Mode::Append, "open"),
            Err(StoreError::UnsafePath { .. })
        ));
        assert_eq!(std::fs::read(&target).expect("read"), b"precious");
        let dir_link = tmp.path().join("dir-link");
        std::os::unix::fs::symlink(tmp.path(), &dir_link).expect("symlink");
        assert!(matches!(
            check_dir(&dir_link),
            Err(StoreError::UnsafePath { .. })
        ));
        assert!(check_dir(tmp.path()).expect("a real folder"));
        assert!(!check_dir(&tmp.path().join("missing")).expect("missing is not an error"));
    }
}
