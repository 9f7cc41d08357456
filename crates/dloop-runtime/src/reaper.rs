//! No process of an action outlives its step: what is left of an action after its main process
//! exits (or is ended) is found and killed here.
//!
//! An action runs in its own process group, and ending the group reaches everything that stayed
//! in it. What left the group (`setsid`, `nohup ... &` under a job-control shell, a double fork
//! into a new session) is reached through the kernel instead: dloop makes itself a *child
//! subreaper* (`PR_SET_CHILD_SUBREAPER`), so every orphaned descendant of an action is re-parented
//! to dloop rather than to init. When an action's main process is gone, its leftovers are exactly
//! dloop's children that are not the main process of an action in flight: [`sweep`] kills each
//! with its process group (SIGKILL: the step is over, and a process that already outlived its
//! parent is not asked twice), reaps it, and repeats until none is left (killing one re-parents
//! its own children to dloop).
//!
//! The children are read from `/proc/self/task/<pid>/children` (the kernel hands orphans to the
//! process's first thread), kept open: one `pread` per step when nothing is left over.
//!
//! Escapes that remain (documented in the README): a process started through another service
//! (`systemd-run`, `at`, a container runtime, `ssh`), which is not a descendant; and anything
//! left when dloop itself is SIGKILLed (the kernel then re-parents to init). For the latter,
//! [`end_leftover_action`] finds the run's processes by `DLOOP_RUN_ID` in `/proc/<pid>/environ`
//! when the run is resumed, cancelled or force-stopped (a process that cleared its environment
//! escapes that fallback).
//!
//! Several sessions may share one process (tests do): an orphan carrying another action's
//! `DLOOP_IDEMPOTENCY_KEY` is left to that action's own sweep.

#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::Once;
use std::time::{Duration, Instant};

/// Main processes of actions in flight in this process, which a sweep must never touch.
static IN_FLIGHT: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Makes this process the subreaper of its descendants (once per process; harmless when the
/// kernel refuses, which only leaves the process-group and `/proc` fallbacks).
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and touches no
        // memory of ours.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
        }
    });
}

/// Spawns an action's main process and registers it until the guard drops. The registry is
/// locked across the spawn, so a sweep in another thread never sees the new child unregistered
/// (between fork and exec it does not carry its action's key yet).
pub(crate) fn spawn_in_flight(
    command: &mut std::process::Command,
) -> std::io::Result<(std::process::Child, InFlight)> {
    let mut registry = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    let child = command.spawn()?;
    let pid = child.id() as i32;
    registry.insert(pid);
    Ok((child, InFlight(pid)))
}

/// Keeps a main process out of sweeps while it is registered.
pub(crate) struct InFlight(i32);

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// Kills and reaps what is left of the action with idempotency key `key` among this process's
/// children; returns how many processes were killed.
pub fn sweep(key: &str) -> usize {
    let own_key = format!("DLOOP_IDEMPOTENCY_KEY={key}");
    let own_group = crate::signals::own_group();
    let mut killed = 0;
    // Each round kills one generation; a fork bomb cannot keep this busy forever.
    for _ in 0..64 {
        let leftovers: Vec<i32> = children()
            .into_iter()
            .filter(|pid| belongs_to(*pid, &own_key))
            .collect();
        if leftovers.is_empty() {
            break;
        }
        for &pid in &leftovers {
            if !is_zombie(pid) {
                // The group too: it reaches what the orphan started in it. Never a group an
                // action in flight leads (its own session ends that one), nor ours.
                if let Some(pgid) = process_group_of(pid)
                    && pgid > 1
                    && pgid != own_group
                    && !registered(pgid)
                {
                    crate::signals::signal_group(pgid, libc::SIGKILL);
                }
                let _ = crate::signals::signal_process(pid, libc::SIGKILL);
                killed += 1;
            }
        }
        for pid in leftovers {
            reap(pid);
        }
    }
    killed
}

fn registered(pid: i32) -> bool {
    IN_FLIGHT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&pid)
}

/// Whether `pid` has exited and waits to be reaped (a zombie is only reaped, never signalled:
/// its process group may be an action's still running).
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z")
    })
}

/// Whether the child `pid` may be swept for the action whose key variable is `own_key`: not a
/// main process in flight, and not carrying another action's key.
fn belongs_to(pid: i32, own_key: &str) -> bool {
    if registered(pid) {
        return false;
    }
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        // Gone already, or not readable: nothing of another action's that can be told apart.
        return true;
    };
    let mut key = None;
    for var in environ.split(|b| *b == 0) {
        if var.starts_with(b"DLOOP_IDEMPOTENCY_KEY=") {
            key = Some(var);
        }
    }
    key.is_none_or(|k| k == own_key.as_bytes())
}

/// This process's children, as the kernel lists them for the thread that adopts orphans.
///
/// The file is opened once and re-read from offset 0 (procfs regenerates it on each read from
/// the start): a path lookup through procfs per step cost more than the rest of the sweep.
fn children() -> Vec<i32> {
    use std::os::unix::fs::FileExt;
    static CHILDREN: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    let file = CHILDREN.get_or_init(|| {
        std::fs::File::open(format!("/proc/self/task/{}/children", std::process::id())).ok()
    });
    let Some(file) = file else {
        return Vec::new();
    };
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match file.read_at(&mut buf, text.len() as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&text)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits (briefly) for a SIGKILLed child to die, so it leaves no zombie.
fn reap(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on one specific pid with WNOHANG; `status` outlives the call.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc != 0 || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Ends every process a dead runner of run `run_id` left behind (its last action and anything
/// that action started), so a re-run never runs beside the old attempt. Returns how many
/// process groups were signalled.
///
/// Actions carry `DLOOP_RUN_ID` in their environment and pass it to their children, so the
/// run's processes are found by reading `/proc/<pid>/environ`; nothing is written per step to
/// find them later. Called only by `resume`, `cancel` and `stop --force`, after the run lock
/// shows no live runner, so none of those processes belongs to a live session.
pub fn end_leftover_action(run_id: &str) -> usize {
    let wanted = format!("DLOOP_RUN_ID={run_id}");
    let own_group = crate::signals::own_group();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut groups = BTreeSet::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ
            .split(|b| *b == 0)
            .any(|var| var == wanted.as_bytes())
        {
            continue;
        }
        match process_group_of(pid) {
            Some(pgid) if pgid > 1 && pgid != own_group => {
                groups.insert(pgid);
            }
            _ => {
                let _ = crate::signals::signal_process(pid, libc::SIGKILL);
            }
        }
    }
    for pgid in &groups {
        crate::signals::signal_group(*pgid, libc::SIGKILL);
    }
    groups.len()
}

/// The process group of `pid`, from `/proc/<pid>/stat` (the field after state and ppid).
pub fn process_group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}
