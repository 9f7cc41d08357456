//! The run lock: an exclusive `flock` on `runs/<id>/lock`, held by the live runner for its whole
//! life and dropped by the kernel when it dies (DESIGN.md principle 5: kernel locks, not PID
//! files). The file's content, `pid host started_at`, is only for sending signals and for humans.
//!
//! Invariants: a process writes to a run only while holding its [`RunLock`]; readers never take
//! the exclusive lock ([`is_locked`] tries a *shared* lock for an instant). A `flock` cannot be
//! lost, but its file can be deleted or replaced under it, after which another process could
//! lock the new file: [`RunLock::check`] compares the inode the path names with the one held
//! (one `stat`, as jj does) and the writer checks it before every append.

use std::fs::{File, TryLockError};
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dloop_core::Timestamp;

use crate::error::StoreError;
use crate::files::{self, Mode};

/// A reader's [`is_locked`] holds a shared lock for microseconds; a writer that meets one retries
/// this many times, a millisecond apart, before calling the run live.
const CONTENDED_RETRIES: u32 = 50;

/// What the holder wrote into the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    /// The holder's process id (for `dloop stop`).
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// When it took the lock.
    pub started_at: Timestamp,
}

/// The held run lock. Dropping it unlocks (closing the file releases the flock).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    /// (device, inode) of the locked file.
    id: (u64, u64),
}

/// Why [`RunLock::try_acquire`] did not get the lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireError {
    /// Someone else holds it; what it wrote into the file, when readable.
    #[error("the lock is held{}", .0.as_ref().map(|i| format!(" by pid {} on {}", i.pid, i.host)).unwrap_or_default())]
    Held(Option<LockInfo>),
    /// The lock file could not be opened or written.
    #[error(transparent)]
    Store(StoreError),
}

impl RunLock {
    /// Takes the lock at `path` without waiting (creating the file, mode 0600, if missing) and
    /// records `pid host started_at` in it.
    ///
    /// Errors: [`AcquireError::Held`] with the holder's info when another process or handle
    /// holds it.
    pub fn try_acquire(path: &Path) -> std::result::Result<Self, AcquireError> {
        let mut file =
            files::open(path, Mode::ReadWriteCreate, "open").map_err(AcquireError::Store)?;
        let mut attempt = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if attempt < CONTENDED_RETRIES => {
                    // A reader's shared probe lasts microseconds, a runner's lock the whole run:
                    // waiting a little tells them apart without a false "already live".
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TryLockError::WouldBlock) => return Err(AcquireError::Held(read_info(path))),
                Err(TryLockError::Error(e)) => {
                    return Err(AcquireError::Store(StoreError::io("lock", path, e)));
                }
            }
        }
        let info = format!("{} {} {}\n", std::process::id(), host_name(), now());
        // Overwrite in place, then cut to length: truncating to zero first makes ext4 start
        // writing the file back at close (its replace-via-truncate heuristic), which the next
        // truncate then waits for, costing milliseconds on a busy disk (benches/resume.rs).
        let written = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| crate::fault::write_all(&mut file, path, info.as_bytes()))
            .and_then(|()| file.set_len(info.len() as u64));
        written.map_err(|e| AcquireError::Store(StoreError::io("write", path, e)))?;
        let meta = file
            .metadata()
            .map_err(|e| AcquireError::Store(StoreError::io("stat", path, e)))?;
        Ok(Self {
            file,
            path: path.to_owned(),
            id: (meta.dev(), meta.ino()),
        })
    }

    /// The lock file's folder was renamed (a run folder created under a temp name moved into
    /// place): the same inode is now reached through `path`.
    pub(crate) fn moved_to(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// Whether the lock path still names the file this lock holds. `Err(why)` when it was
    /// deleted or replaced: another process may then hold a lock on the new file.
    pub fn check(&self) -> Result<(), String> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.id => Ok(()),
            Ok(_) => Err(format!(
                "{} was replaced by another file",
                self.path.display()
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(format!("{} was deleted", self.path.display()))
            }
            Err(e) => Err(format!("cannot stat {}: {e}", self.path.display())),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Closing would release it too; unlocking first makes the release explicit.
        let _ = self.file.unlock();
    }
}

/// True when a live process holds the run lock at `path`. A missing or unreadable file is "not
/// locked"; a link in its place is not followed (and so not locked). Never blocks and never
/// takes the exclusive lock.
pub fn is_locked(path: &Path) -> bool {
    let file = match files::open(path, Mode::Read, "open") {
        Ok(f) => f,
        Err(_) => return false,
    };
    match file.try_lock_shared() {
        // Dropping `file` releases the probe at once.
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    }
}

/// Reads what the holder wrote (`pid host started_at`), if the file exists and parses.
pub fn read_info(path: &Path) -> Option<LockInfo> {
    let bytes = files::read_optional(path).ok()??;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split_whitespace();
    let pid = parts.next()?.parse().ok()?;
    let host = parts.next()?.to_owned();
    let started_at = Timestamp::parse(parts.next()?)?;
    Some(LockInfo {
        pid,
        host,
        started_at,
    })
}

fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().replace(char::is_whitespace, "_"))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_until_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        assert!(!is_locked(&path));
        let lock = RunLock::try_acquire(&path).expect("first acquire");
        assert!(is_locked(&path));
        let info = read_info(&path).expect("info written");
        assert_eq!(info.pid, std::process::id());
        assert!(matches!(
            RunLock::try_acquire(&path),
            Err(AcquireError::Held(Some(_)))
        ));
        drop(lock);
        assert!(!is_locked(&path));
        assert!(RunLock::try_acquire(&path).is_ok());
    }
}
