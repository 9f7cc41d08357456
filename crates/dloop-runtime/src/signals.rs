//! Signals: sending them to an action's process group, and turning the signals dloop receives
//! into stop requests on a [`StopFlag`](crate::process::StopFlag) and job control.
//!
//! | signal | effect |
//! |---|---|
//! | SIGTERM (`dloop stop`), SIGHUP (terminal closed), SIGQUIT (Ctrl-\\) | stop: end the action's tree (TERM, grace, KILL), record it, pause |
//! | SIGUSR1 (`dloop stop --drain`) | let the current action finish, then pause |
//! | SIGINT (Ctrl-C) | stop; a second SIGINT ends the action with SIGKILL at once |
//! | SIGTSTP (Ctrl-Z) | stop the action's group with dloop; `fg` (SIGCONT) continues both |
//!
//! Handlers only touch atomics; the work happens on the session's thread, which checks them
//! between reads of the action's pipes (every 20 ms at most) and between steps.

#![allow(unsafe_code)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

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

    /// Counts one SIGINT; returns how many came before it. Async-signal-safe (one atomic).
    pub fn note_interrupt(&self) -> u8 {
        self.interrupted.fetch_add(1, Ordering::SeqCst)
    }
}

/// Set by the SIGTSTP handler; taken by [`take_suspend_request`].
static SUSPEND_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-Z (SIGTSTP) arrived since the last call.
pub fn take_suspend_request() -> bool {
    SUSPEND_REQUESTED.swap(false, Ordering::SeqCst)
}

/// Whether Ctrl-Z (SIGTSTP) arrived and is not yet handled (does not take it).
pub fn suspend_requested() -> bool {
    SUSPEND_REQUESTED.load(Ordering::SeqCst)
}

/// Stops this process the way SIGTSTP's default would, after stopping the action's group
/// `action` (which, in its own group, the terminal does not stop); when continued (`fg`),
/// continues the action too. Returns how long the process was stopped.
pub fn suspend_with(action: Option<i32>) -> Duration {
    if let Some(pgid) = action {
        signal_group(pgid, libc::SIGTSTP);
    }
    let before = Instant::now();
    // SAFETY: raise(2) has no memory-safety preconditions. SIGSTOP cannot be caught, so this
    // returns only once the process is continued.
    unsafe {
        libc::raise(libc::SIGSTOP);
    }
    if let Some(pgid) = action {
        signal_group(pgid, libc::SIGCONT);
    }
    before.elapsed()
}

/// Installs handlers that raise `flag`: SIGTERM, SIGHUP and SIGQUIT → Stop, SIGUSR1 → Drain,
/// SIGINT → Stop and a second SIGINT → Now; and SIGTSTP → a suspend request.
///
/// # Errors
/// When a handler cannot be registered.
pub fn install(flag: Arc<StopFlag>, record: Arc<SignalRecord>) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP, SIGUSR1};
    let drain = Arc::clone(&flag);
    // SAFETY: the handlers only touch atomics, which is async-signal-safe.
    unsafe {
        for signal in [SIGTERM, SIGHUP, SIGQUIT] {
            let term = Arc::clone(&flag);
            signal_hook::low_level::register(signal, move || term.raise(StopLevel::Stop))?;
        }
        signal_hook::low_level::register(SIGTSTP, || {
            SUSPEND_REQUESTED.store(true, Ordering::SeqCst);
        })?;
        signal_hook::low_level::register(SIGUSR1, move || drain.raise(StopLevel::Drain))?;
        signal_hook::low_level::register(SIGINT, move || {
            let before = record.note_interrupt();
            flag.raise(if before == 0 {
                StopLevel::Stop
            } else {
                StopLevel::Now
            });
        })?;
    }
    Ok(())
}
