//! Liveness of replay scratch folders (`.loops/.dloop/scratch/replay-*`, made by
//! `Storage::scratch` for a replay without `--live`): which ones a live replay holds, and the
//! removal of those whose replay died (a SIGKILL skips the removal on drop).
//!
//! Invariants, kept with kernel locks (DESIGN.md principle 5), never PIDs:
//! - a replay holds an exclusive `flock` on its folder's `lock` file for as long as it runs; the
//!   kernel drops it when the process dies, however it dies;
//! - folders are made (mkdir, then the lock file, locked) and swept under an exclusive `flock`
//!   on `scratch/.registry`, so a sweep never sees a folder between its mkdir and its lock;
//! - a sweep removes a folder only when it can take that folder's lock itself (or the folder
//!   has no lock file, which under the registry lock means its maker died before locking): a
//!   live replay's folder is never removed, and two replays at once each keep their own;
//! - nothing is followed through a symbolic link: entries are checked with `symlink_metadata`,
//!   the lock file is opened with `O_NOFOLLOW`, and `remove_dir_all` removes links, not targets.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The prefix of every scratch folder's name.
pub(crate) const PREFIX: &str = "replay-";

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
    let file = open_nofollow(&dir.join("lock"), true)?;
    match file.try_lock() {
        Ok(()) => Ok(Held { _file: file }),
        Err(TryLockError::WouldBlock) => Err(io::Error::other(format!(
            "{} is locked by another process",
            dir.display()
        ))),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// The scratch folders under `parent` whose replay is no longer alive; with `remove`, removed
/// too. Call with the [`Registry`] held. Folders that cannot be read are left alone.
pub(crate) fn sweep(parent: &Path, remove: bool, _registry: &Registry) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let dir = entry.path();
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let lock = match open_nofollow(&dir.join("lock"), false) {
            Ok(file) => match file.try_lock() {
                // Free: its replay is gone. The lock stays ours while the folder goes.
                Ok(()) => Some(file),
                Err(_) => continue,
            },
            // Its maker died between mkdir and the lock (it held the registry then).
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(_) => continue,
        };
        if !remove || std::fs::remove_dir_all(&dir).is_ok() {
            stale.push(dir);
        }
        drop(lock);
    }
    stale.sort();
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

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dloop-scratch-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_held_folder_stays_and_a_free_one_goes() {
        let parent = temp();
        let registry = Registry::lock(&parent).expect("registry");
        let live = parent.join("replay-live");
        std::fs::create_dir(&live).expect("mkdir");
        let held = hold(&live, &registry).expect("hold");
        let dead = parent.join("replay-dead");
        std::fs::create_dir(&dead).expect("mkdir");
        drop(hold(&dead, &registry).expect("hold"));
        let unlocked = parent.join("replay-nolock");
        std::fs::create_dir(&unlocked).expect("mkdir");
        let other = parent.join("keep-me");
        std::fs::create_dir(&other).expect("mkdir");
        assert_eq!(
            sweep(&parent, false, &registry),
            vec![dead.clone(), unlocked.clone()],
            "a dry run lists"
        );
        assert!(dead.exists(), "and removes nothing");
        assert_eq!(
            sweep(&parent, true, &registry),
            vec![dead.clone(), unlocked.clone()]
        );
        assert!(!dead.exists() && !unlocked.exists());
        assert!(live.exists() && other.exists());
        drop(held);
        assert_eq!(sweep(&parent, true, &registry), vec![live.clone()]);
        drop(registry);
        std::fs::remove_dir_all(&parent).expect("clean up");
    }

    #[test]
    fn a_link_named_like_a_scratch_folder_is_not_followed() {
        let parent = temp();
        let target = temp();
        std::fs::write(target.join("precious"), b"x").expect("write");
        std::os::unix::fs::symlink(&target, parent.join("replay-link")).expect("link");
        let registry = Registry::lock(&parent).expect("registry");
        assert!(sweep(&parent, true, &registry).is_empty());
        assert!(target.join("precious").exists());
        drop(registry);
        std::fs::remove_dir_all(&parent).expect("clean up");
        std::fs::remove_dir_all(&target).expect("clean up");
    }
}
