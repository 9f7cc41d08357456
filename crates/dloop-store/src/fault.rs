//! The file store's I/O seam: every write, fsync, rename and read point of the store goes
//! through these functions, so a test can fail or cut short any one of them (issue 13), as
//! redb's `StorageBackend` and fjall's journal tests do.
//!
//! (Removing a run folder goes through it too, so that nothing is cleaned up after a crash.)
//!
//! Without the `fault-injection` feature each function is an `#[inline]` call of the std
//! operation it names: no branch, no state, so the log's hot path stays one `write` and one
//! `fdatasync` per batch. With the feature, each call first consults the calling thread's
//! [`FaultPlan`] (tests run on their own threads, and the file store does its I/O on the
//! caller's), which may:
//! - fail the operation with an errno ([`Fault::Fail`]): nothing is done;
//! - cut a write short ([`Fault::Short`]): a prefix is written, then the errno is returned
//!   (what a `write` that returns short and a retry that hits ENOSPC do together);
//! - crash ([`Fault::Crash`]): the operation is not done and every later one fails, as if the
//!   process were gone; [`FaultPlan::crash_image`] then rewinds the files to what a power loss
//!   at that instant leaves on disk: bytes written since a file's last fsync are lost, and a
//!   rename whose folder was not fsynced since is undone.
//!
//! Invariant (with the feature, no plan installed): every function behaves exactly as without
//! the feature.

#[cfg(not(feature = "fault-injection"))]
pub(crate) use os::{
    before_read, remove_dir_all, rename, sync_all, sync_data, sync_dir, write_all,
};

/// The plain std calls.
#[cfg(not(feature = "fault-injection"))]
mod os {
    use std::fs::File;
    use std::io;
    use std::path::Path;

    /// Writes all of `bytes` to `file` (the file `path`).
    #[inline]
    pub(crate) fn write_all(file: &mut File, _path: &Path, bytes: &[u8]) -> io::Result<()> {
        io::Write::write_all(file, bytes)
    }

    /// `fdatasync`s `file` (the file `path`).
    #[inline]
    pub(crate) fn sync_data(file: &File, _path: &Path) -> io::Result<()> {
        file.sync_data()
    }

    /// `fsync`s `file` (the file `path`).
    #[inline]
    pub(crate) fn sync_all(file: &File, _path: &Path) -> io::Result<()> {
        file.sync_all()
    }

    /// `fsync`s the folder `dir`.
    #[inline]
    pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
        File::open(dir).and_then(|d| d.sync_all())
    }

    /// Renames `from` to `to`.
    #[inline]
    pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    /// Removes the folder `dir` and everything in it.
    #[inline]
    pub(crate) fn remove_dir_all(dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
    }

    /// A read of `path` is about to start.
    #[inline]
    pub(crate) fn before_read(_path: &Path) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "fault-injection")]
pub use plan::{Fault, FaultPlan, Op, PlanGuard, Seen};
#[cfg(feature = "fault-injection")]
pub(crate) use plan::{
    before_read, remove_dir_all, rename, sync_all, sync_data, sync_dir, write_all,
};

#[cfg(feature = "fault-injection")]
#[path = "fault_plan.rs"]
mod plan;
