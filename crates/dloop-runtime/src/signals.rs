//! Signals: sending them to an action's process group, and turning SIGINT, SIGTERM and
//! SIGUSR1 into stop requests on a [`StopFlag`](crate::process::StopFlag).
//!
//! SIGTERM (`dloop stop`) asks for a stop; SIGUSR1 (`dloop stop --drain`) lets the current
//! action finish first; SIGINT (Ctrl-C) stops, and a second SIGINT ends the action at once.

#![allow(unsafe_code)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::process::{StopFlag, StopLevel};

/// Sends `signal` to every process of group `pgid`. A group that is already gone is fine.
pub fn signal_group(pgid: i32, signal: i32) {
    debug_assert!(pgid > 1, "never signal group 0, 1 or our own: pgid {pgid}");
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the group.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// The process group of this process.
pub fn own_group() -> i32 {
    // SAFETY: getpgrp(2) cannot fail and has no preconditions.
    unsafe { libc::getpgrp() }
}

/// Whether any process of group `pgid` is alive.
pub fn group_exists(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks for existence and permission.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// Sends `signal` to one process.
///
/// # Errors
/// The OS error (no such process, not permitted).
pub fn signal_process(pid: i32, signal: i32) -> io::Result<()> {
    if pid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal pid {pid}"),
        ));
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Which stop signal arrived last, so the CLI can exit 130 after Ctrl-C and 3 after `stop`.
#[derive(Debug, Default)]
pub struct SignalRecord {
    interrupted: AtomicU8,
}

impl SignalRecord {
    /// Whether a SIGINT (Ctrl-C) was received.
    pub fn was_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst) > 0
    }
}

/// Installs handlers that raise `flag`: SIGTERM → Stop, SIGUSR1 → Drain, SIGINT → Stop, and a
/// second SIGINT → Now.
///
/// # Errors
/// When a handler cannot be registered.
pub fn install(flag: Arc<StopFlag>, record: Arc<SignalRecord>) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let term = Arc::clone(&flag);
    let drain = Arc::clone(&flag);
    // SAFETY: the handlers only touch atomics, which is async-signal-safe.
    unsafe {
        signal_hook::low_level::register(SIGTERM, move || term.raise(StopLevel::Stop))?;
        signal_hook::low_level::register(SIGUSR1, move || drain.raise(StopLevel::Drain))?;
        signal_hook::low_level::register(SIGINT, move || {
            let before = record.interrupted.fetch_add(1, Ordering::SeqCst);
            flag.raise(if before == 0 {
                StopLevel::Stop
            } else {
                StopLevel::Now
            });
        })?;
    }
    Ok(())
}
