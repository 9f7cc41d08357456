//! Liveness of replay scratch folders (`.loops/.dloop/scratch/replay-*`, made by
//! `Storage::scratch` for a replay without `--live`): which ones a live replay holds, and which
//! ones belong to a replay that died (a SIGKILL skips the removal on drop). Removing them is
//! the composition root's (`Storage::sweep_scratch`), like every deletion of store files.
//!
//! Invariants, kept with kernel locks (DESIGN.md principle 5), never PIDs:
//! - a replay holds an exclusive `flock` on its folder's [`LOCK_FILE`] for as long as it runs; the
//!   kernel drops it when the process dies, however it dies;
//! - folders are made (mkdir, then the lock file, locked) and swept under an exclusive `flock`
//!   on `scratch/.registry`, so a sweep never sees a folder between its mkdir and its lock;
//! - a folder is stale only when the sweeper can take that folder's lock itself (or the folder
//!   has no lock file, which under the registry lock means its maker died before locking), and
//!   it keeps that lock while the folder is removed: a live replay's folder is never stale, and
//!   two replays at once each keep their own;
//! - nothing is followed through a symbolic link: entries are checked with `symlink_metadata`
//!   and the lock file is opened with `O_NOFOLLOW`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The prefix of every scratch folder's name.
pub(crate) const PREFIX: &str = "replay-";

/// The file in a scratch folder whose lock says its replay is alive (not a run's lock: the
/// scratch folder holds a whole store).
const LOCK_FILE: &str = "replay.lock";

/// The exclusive lock on the scratch registry, held while folders are made or swept.
pub(crate) struct Registry {
    _file: File,
}

impl Registry {
    /// Takes the registry lock of `parent` (the `scratch/` folder), waiting for a maker or a
    /// sweeper that holds it (both take milliseconds).
    pub(crate) fn lock(parent: &Path) -> io::Result<Registry> {
        let file = open_nofollow(&parent.join(".registry"), true)?;
        file.lock()?;
        Ok(Registry { _file: file })
    }
}

/// A live replay's hold on its folder: dropped (the process ends) it frees the folder.
pub(crate) struct Held {
    _file: File,
}

/// Makes `dir`'s lock file and takes its lock: call with the [`Registry`] held, right after
/// making `dir`.
pub(crate) fn hold(dir: &Path, _registry: &Registry) -> io::Result<Held> {
    let file = open_nofollow(&dir.join(LOCK_FILE), true)?;
    match file.try_lock() {
        Ok(()) => Ok(Held { _file: file }),
        Err(TryLockError::WouldBlock) => Err(io::Error::other(format!(
            "{} is locked by another process",
            dir.display()
        ))),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// A scratch folder whose replay is gone, with its lock held by this process until dropped.
pub(crate) struct Stale {
    /// The folder.
    pub(crate) dir: PathBuf,
    _lock: Option<File>,
}

/// The scratch folders under `parent` whose replay is no longer alive, each held (a replay
/// cannot take it back: none ever reopens a folder). Call with the [`Registry`] held. Entries
/// that cannot be read, links, and folders of live replays are left out.
pub(crate) fn stale(parent: &Path, _registry: &Registry) -> Vec<Stale> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let dir = entry.path();
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let lock = match open_nofollow(&dir.join(LOCK_FILE), false) {
            Ok(file) => match file.try_lock() {
                Ok(()) => Some(file),
                Err(_) => continue,
            },
            // Its maker died between mkdir and the lock (it held the registry then).
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(_) => continue,
        };
        stale.push(Stale { dir, _lock: lock });
    }
    stale.sort_by(|a, b| a.dir.cmp(&b.dir));
    stale
}

fn open_nofollow(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(stale: &[Stale]) -> Vec<String> {
        stale
            .iter()
            .filter_map(|s| s.dir.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_held_folder_is_alive_and_a_free_one_is_stale() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let parent = tmp.path();
        let registry = Registry::lock(parent).expect("registry");
        let live = parent.join("replay-live");
        std::fs::create_dir(&live).expect("mkdir");
        let held = hold(&live, &registry).expect("hold");
        let dead = parent.join("replay-dead");
        std::fs::create_dir(&dead).expect("mkdir");
        drop(hold(&dead, &registry).expect("hold"));
        std::fs::create_dir(parent.join("replay-nolock")).expect("mkdir");
        std::fs::create_dir(parent.join("keep-me")).expect("mkdir");
        let found = stale(parent, &registry);
        assert_eq!(names(&found), ["replay-dead", "replay-nolock"]);
        // While a sweeper holds a stale folder, nobody else finds it free.
        assert!(hold(&dead, &registry).is_err());
        drop(found);
        drop(held);
        assert_eq!(
            names(&stale(parent, &registry)),
            ["replay-dead", "replay-live", "replay-nolock"]
        );
    }

    #[test]
    fn a_link_named_like_a_scratch_folder_is_not_stale() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let target = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink(target.path(), tmp.path().join("replay-link")).expect("link");
        let registry = Registry::lock(tmp.path()).expect("registry");
        assert!(stale(tmp.path(), &registry).is_empty());
    }
}
