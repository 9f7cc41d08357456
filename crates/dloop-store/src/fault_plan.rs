//! The fault plan behind [`crate::fault`] (feature `fault-injection`): rules that fail, cut
//! short or crash the n-th matching I/O operation of the calling thread, a log of every
//! operation seen, and the live-versus-durable bookkeeping that builds a crash image.
//!
//! Durable model (what a power loss keeps): a file's bytes up to its length at its last
//! successful fsync through the seam (a file first seen with bytes already in it counts them
//! as durable); a rename once its destination folder was fsynced after it. Creations and
//! removals of files are taken as durable (the store fsyncs their folders right after).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An I/O operation of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A write (an append to the log or the output stream, a temp file's contents, the lock).
    Write,
    /// An `fdatasync` or `fsync` of a file.
    Sync,
    /// An `fsync` of a folder.
    SyncDir,
    /// A rename (a snapshot or `run.json` into place, a run folder into `runs/`).
    Rename,
    /// Removing a folder (a run deleted, a creation cleaned up).
    Remove,
    /// The start of a read (a log scan, a snapshot, `run.json`, the output stream).
    Read,
}

/// What happens to the operation a rule picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// It fails with this errno; nothing is done.
    Fail(i32),
    /// A write stores its first `keep` bytes, then fails with `errno` (other operations just
    /// fail).
    Short {
        /// Bytes written before the failure.
        keep: usize,
        /// The error returned.
        errno: i32,
    },
    /// The machine stops here: the operation is not done, it and every later one fail (EIO),
    /// and [`PlanGuard::crash_image`] leaves the files as a power loss at this instant would.
    Crash,
}

/// One operation the plan saw: what, on which file, and whether a fault hit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The operation.
    pub op: Op,
    /// The file or folder (a rename's source).
    pub path: PathBuf,
    /// The fault injected into it, if any (operations after a crash show [`Fault::Crash`]).
    pub fault: Option<Fault>,
}

#[derive(Debug)]
struct Rule {
    op: Op,
    file: Option<String>,
    nth: u64,
    seen: u64,
    fault: Fault,
}

#[derive(Debug)]
struct Pending {
    from: PathBuf,
    to: PathBuf,
    old: Option<Vec<u8>>,
}

/// Faults to inject into the calling thread's store I/O. Build it, then [`FaultPlan::install`].
#[derive(Debug, Default)]
pub struct FaultPlan {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
    crashed: bool,
    durable: HashMap<PathBuf, u64>,
    pending: Vec<Pending>,
}

thread_local! {
    static PLAN: RefCell<Option<FaultPlan>> = const { RefCell::new(None) };
}

impl FaultPlan {
    /// A plan that injects nothing (it still logs every operation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Injects `fault` into the `nth` (from 1) operation `op` on a file whose name starts with
    /// `file` (any file when `None`; a prefix, so `.creating-` picks a run folder being made).
    pub fn at(mut self, op: Op, file: Option<&str>, nth: u64, fault: Fault) -> Self {
        self.rules.push(Rule {
            op,
            file: file.map(str::to_owned),
            nth,
            seen: 0,
            fault,
        });
        self
    }

    /// Makes this the calling thread's plan until the guard is dropped.
    pub fn install(self) -> PlanGuard {
        PLAN.with(|p| *p.borrow_mut() = Some(self));
        PlanGuard { _private: () }
    }
}

/// The installed plan; dropping it uninstalls the plan.
#[derive(Debug)]
pub struct PlanGuard {
    _private: (),
}

impl PlanGuard {
    /// Every operation seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        PLAN.with(|p| {
            p.borrow()
                .as_ref()
                .map(|p| p.seen.clone())
                .unwrap_or_default()
        })
    }

    /// Whether any rule fired.
    pub fn fired(&self) -> bool {
        self.seen().iter().any(|s| s.fault.is_some())
    }

    /// Uninstalls the plan and rewinds the files it saw to their durable state (module doc):
    /// each file is cut to its length at its last fsync, and each rename not made durable by
    /// a folder fsync is undone, newest first, restoring what it replaced.
    pub fn crash_image(self) -> io::Result<()> {
        let plan = PLAN.with(|p| p.borrow_mut().take()).unwrap_or_default();
        let mut durable = plan.durable;
        for pending in plan.pending.iter().rev() {
            std::fs::rename(&pending.to, &pending.from)?;
            rekey(&mut durable, &pending.to, &pending.from);
            if let Some(old) = &pending.old {
                std::fs::write(&pending.to, old)?;
            }
        }
        for (path, len) in durable {
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(file) if file.metadata()?.len() > len => file.set_len(len)?,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Drop for PlanGuard {
    fn drop(&mut self) {
        PLAN.with(|p| p.borrow_mut().take());
    }
}

/// Moves the durable lengths of `from` (a file, or a folder's files) to `to`.
fn rekey(durable: &mut HashMap<PathBuf, u64>, from: &Path, to: &Path) {
    let moved: Vec<PathBuf> = durable
        .keys()
        .filter(|k| k.starts_with(from))
        .cloned()
        .collect();
    for key in moved {
        let len = durable.remove(&key).expect("the key was just listed");
        let rest = key.strip_prefix(from).expect("the key starts with from");
        // `join("")` would add a trailing slash, which names a folder.
        let key = if rest.as_os_str().is_empty() {
            to.to_owned()
        } else {
            to.join(rest)
        };
        durable.insert(key, len);
    }
}

/// Logs `op` on `path` and returns the fault to inject, if any. `None` without a plan.
fn consult(op: Op, path: &Path) -> Option<Fault> {
    PLAN.with(|p| {
        let mut plan = p.borrow_mut();
        let plan = plan.as_mut()?;
        let fault = if plan.crashed {
            Some(Fault::Crash)
        } else {
            let name = path.file_name().map(|n| n.to_string_lossy());
            let mut hit = None;
            for rule in &mut plan.rules {
                let matches = rule.op == op
                    && rule
                        .file
                        .as_deref()
                        .is_none_or(|f| name.as_deref().is_some_and(|n| n.starts_with(f)));
                if matches {
                    rule.seen += 1;
                    if rule.seen == rule.nth && hit.is_none() {
                        hit = Some(rule.fault);
                    }
                }
            }
            hit
        };
        plan.crashed |= fault == Some(Fault::Crash);
        plan.seen.push(Seen {
            op,
            path: path.to_owned(),
            fault,
        });
        Some(fault)
    })
    .flatten()
}

fn with_plan(f: impl FnOnce(&mut FaultPlan)) {
    PLAN.with(|p| {
        if let Some(plan) = p.borrow_mut().as_mut() {
            f(plan);
        }
    });
}

fn failure(fault: Fault) -> io::Error {
    match fault {
        Fault::Fail(errno) | Fault::Short { errno, .. } => io::Error::from_raw_os_error(errno),
        Fault::Crash => io::Error::other("the machine crashed here (fault injection)"),
    }
}

/// Writes all of `bytes` to `file` (the file `path`), unless the plan says otherwise.
pub(crate) fn write_all(file: &mut File, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let fault = consult(Op::Write, path);
    if fault != Some(Fault::Crash) {
        // Bytes already in a file first seen here are taken as durable.
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        with_plan(|plan| {
            plan.durable.entry(path.to_owned()).or_insert(len);
        });
    }
    match fault {
        None => file.write_all(bytes),
        Some(Fault::Short { keep, errno }) => {
            file.write_all(&bytes[..keep.min(bytes.len())])?;
            Err(io::Error::from_raw_os_error(errno))
        }
        Some(f) => Err(failure(f)),
    }
}

fn synced(file: &File, path: &Path) {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    with_plan(|plan| {
        plan.durable.insert(path.to_owned(), len);
    });
}

/// `fdatasync`s `file` (the file `path`), unless the plan says otherwise.
pub(crate) fn sync_data(file: &File, path: &Path) -> io::Result<()> {
    if let Some(f) = consult(Op::Sync, path) {
        return Err(failure(f));
    }
    file.sync_data()?;
    synced(file, path);
    Ok(())
}

/// `fsync`s `file` (the file `path`), unless the plan says otherwise.
pub(crate) fn sync_all(file: &File, path: &Path) -> io::Result<()> {
    if let Some(f) = consult(Op::Sync, path) {
        return Err(failure(f));
    }
    file.sync_all()?;
    synced(file, path);
    Ok(())
}

/// `fsync`s the folder `dir`, unless the plan says otherwise; its renames become durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    if let Some(f) = consult(Op::SyncDir, dir) {
        return Err(failure(f));
    }
    File::open(dir).and_then(|d| d.sync_all())?;
    with_plan(|plan| plan.pending.retain(|p| p.to.parent() != Some(dir)));
    Ok(())
}

/// Renames `from` to `to`, unless the plan says otherwise; the rename is pending (undone by a
/// crash image) until `to`'s folder is fsynced.
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(f) = consult(Op::Rename, from) {
        return Err(failure(f));
    }
    let tracked = PLAN.with(|p| p.borrow().is_some());
    let old = if tracked && to.is_file() {
        Some(std::fs::read(to)?)
    } else {
        None
    };
    std::fs::rename(from, to)?;
    with_plan(|plan| {
        rekey(&mut plan.durable, from, to);
        plan.pending.push(Pending {
            from: from.to_owned(),
            to: to.to_owned(),
            old,
        });
    });
    Ok(())
}

/// Removes the folder `dir` and everything in it, unless the plan says otherwise.
pub(crate) fn remove_dir_all(dir: &Path) -> io::Result<()> {
    if let Some(f) = consult(Op::Remove, dir) {
        return Err(failure(f));
    }
    std::fs::remove_dir_all(dir)
}

/// A read of `path` is about to start; fails when the plan says so.
pub(crate) fn before_read(path: &Path) -> io::Result<()> {
    match consult(Op::Read, path) {
        Some(f) => Err(failure(f)),
        None => Ok(()),
    }
}
