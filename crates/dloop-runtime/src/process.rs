//! Supervises one action process: spawned in its own process group, both pipes read on one
//! thread and handed to a chunk callback as they arrive, per-action `timeout`, `idle_timeout`
//! and the run's deadline enforced on the whole group (SIGTERM, a grace period, then SIGKILL),
//! and so is a stop request; Ctrl-Z stops the action with dloop and `fg` continues both.
//!
//! Invariants:
//! - both pipes are polled together and drained as data arrives, so a child writing megabytes
//!   to either never blocks on a full pipe (no deadlock past 64 KiB);
//! - the wait ends: once the main process has exited, the pipes get [`LINGER`] to drain, then
//!   whatever is left of the action is killed ([`crate::reaper::sweep`]: its group and every
//!   orphan re-parented to dloop) and the pipes are closed on dloop's side, so a grandchild that
//!   holds them open (`setsid server &`) can neither hang the step nor outlive it;
//! - a stop that arrives after the main process exited by itself ends nothing: the action
//!   finished and is recorded as finished (never re-run).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use dloop_core::event::ActionTimeout;

use crate::actions::output::Stream;

/// How often a running action checks for stop requests and deadlines when it is quiet.
const TICK: Duration = Duration::from_millis(20);
/// How long pipes may stay open after the main process exited before the rest is ended.
pub const LINGER: Duration = Duration::from_millis(200);

/// What the run asks of a running action, shared with the signal handlers.
#[derive(Debug, Default)]
pub struct StopFlag(AtomicU8);

/// Levels of [`StopFlag`], in increasing urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum StopLevel {
    /// Keep going.
    None = 0,
    /// Let the current action finish, then pause (`dloop stop --drain`).
    Drain = 1,
    /// End the action (TERM, grace, KILL) and pause (`dloop stop`, first Ctrl-C, SIGHUP).
    Stop = 2,
    /// End the action with SIGKILL now (second Ctrl-C).
    Now = 3,
}

impl StopFlag {
    /// The current level.
    pub fn level(&self) -> StopLevel {
        match self.0.load(Ordering::SeqCst) {
            0 => StopLevel::None,
            1 => StopLevel::Drain,
            2 => StopLevel::Stop,
            _ => StopLevel::Now,
        }
    }

    /// Raises the level (never lowers it).
    pub fn raise(&self, level: StopLevel) {
        self.0.fetch_max(level as u8, Ordering::SeqCst);
    }
}

/// The time limits of one action.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// The state's `timeout` (wall clock of the action).
    pub timeout: Option<Duration>,
    /// The state's `idle_timeout` (longest silence).
    pub idle_timeout: Option<Duration>,
    /// When the run's own timeout ends.
    pub run_deadline: Option<Instant>,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

/// One process to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Extra environment (`DLOOP_*`).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Bytes written to stdin (then closed); `None` gives `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// The action's idempotency key: what is left over is found by it.
    pub idempotency_key: String,
    /// Time limits.
    pub limits: Limits,
}

/// How a process ended.
#[derive(Debug, Clone)]
pub struct ProcessEnd {
    /// Its exit status; `None` when it could not be started.
    pub status: Option<ExitStatus>,
    /// Why it could not be started.
    pub spawn_error: Option<String>,
    /// Set when a time limit ended it.
    pub timed_out: Option<ActionTimeout>,
    /// Whether a stop request ended it (it did not finish, and must not be recorded as
    /// finished).
    pub stopped: bool,
    /// Wall time, not counting time stopped by Ctrl-Z.
    pub duration: Duration,
}

impl ProcessEnd {
    /// The exit code, if it exited.
    pub fn exit_code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// The signal that ended it, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.status.and_then(|s| s.signal())
    }
}

/// Runs the process to its end, handing each chunk of output to `on_chunk` as it arrives.
///
/// One thread does everything: it `poll`s both pipes (so neither can fill up and block the
/// child), hands over what arrives, and between reads checks the stop flag, the deadlines,
/// Ctrl-Z, and whether the main process has exited. No thread is started per action (only a
/// writer for a given stdin): a step's cost should stay near one `fdatasync`.
///
/// # Errors
/// Failures of dloop's own I/O: polling, waiting, or `on_chunk`'s error (the output stream).
/// A program that cannot be started is a result ([`ProcessEnd::spawn_error`]), not an error.
pub fn run_process(
    spec: &ProcessSpec,
    stop: &StopFlag,
    on_chunk: &mut dyn FnMut(Stream, &[u8]) -> io::Result<()>,
) -> io::Result<ProcessEnd> {
    run_process_until(spec, stop, &mut |stream, bytes| {
        on_chunk(stream, bytes).map(|()| Flow::Continue)
    })
}

/// What a chunk callback of [`run_process_until`] asks of the running action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep running.
    Continue,
    /// End the action now (SIGTERM to its group, SIGKILL after the grace period), as a
    /// limit the caller enforces itself (an agent's turn cap). The end is not a stop request:
    /// [`ProcessEnd::stopped`] stays false and the action counts as finished.
    End,
}

/// [`run_process`], where `on_chunk` can also end the action ([`Flow::End`]).
///
/// # Errors
/// As [`run_process`].
pub fn run_process_until(
    spec: &ProcessSpec,
    stop: &StopFlag,
    on_chunk: &mut dyn FnMut(Stream, &[u8]) -> io::Result<Flow>,
) -> io::Result<ProcessEnd> {
    crate::reaper::become_subreaper();
    let mut started = Instant::now();
    let mut command = Command::new(&spec.argv[0]);
    command
        .args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let (mut child, registration) = match crate::reaper::spawn_in_flight(&mut command) {
        Ok(spawned) => spawned,
        Err(err) => {
            return Ok(ProcessEnd {
                status: None,
                spawn_error: Some(format!("could not start `{}`: {err}", spec.argv[0])),
                timed_out: None,
                stopped: false,
                duration: started.elapsed(),
            });
        }
    };
    let pgid = child.id() as i32;
    if let (Some(input), Some(mut pipe)) = (spec.stdin.clone(), child.stdin.take()) {
        // A writer thread, so a child that does not read its stdin cannot block us.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let mut pipes: [Option<Box<dyn ReadFd>>; 2] = [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn ReadFd>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn ReadFd>),
    ];
    let limits = &spec.limits;
    // Polled with the pipes, so the exit of a process that closed its pipes early is seen at
    // once (no sleeping loop); without pidfd support (before Linux 5.3) the poll just ticks.
    let exit_fd = pidfd_open(pgid);
    let mut buf = vec![0u8; 64 * 1024];
    let mut wall_deadline = limits.timeout.map(|t| started + t);
    let mut last_output = Instant::now();
    let mut exited_at: Option<Instant> = None;
    let mut exit_status = None;
    let mut timed_out = None;
    let mut stopped = false;
    let mut swept = false;
    let mut killer = Killer::new(pgid, limits.kill_grace);
    while pipes.iter().any(Option::is_some) || exit_status.is_none() {
        let watch_exit = exit_fd.as_ref().filter(|_| exit_status.is_none());
        let ready = wait_readable(&pipes, watch_exit, TICK)?;
        for (index, is_ready) in ready.into_iter().enumerate() {
            if !is_ready {
                continue;
            }
            let Some(pipe) = pipes[index].as_mut() else {
                continue;
            };
            // Readable: one read returns what is there without blocking (0 at end of file).
            match pipe.read(&mut buf) {
                Ok(0) => pipes[index] = None,
                Ok(n) => {
                    last_output = Instant::now();
                    if on_chunk(stream_of(index), &buf[..n])? == Flow::End {
                        killer.terminate(last_output);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => pipes[index] = None,
            }
        }
        if crate::signals::take_suspend_request() {
            // Ctrl-Z: the action is in its own group, which the terminal does not stop; stop
            // it with dloop, and continue it when dloop is continued. Time spent stopped does
            // not count against the action's limits.
            let paused = crate::signals::suspend_with(exit_status.is_none().then_some(pgid));
            started += paused;
            last_output += paused;
            wall_deadline = wall_deadline.map(|d| d + paused);
        }
        let now = Instant::now();
        if exit_status.is_none() {
            exit_status = child.try_wait()?;
            if exit_status.is_some() {
                exited_at = Some(now);
            }
        }
        if !swept && exited_at.is_some_and(|at| now.duration_since(at) > LINGER) {
            // The main process is gone but something it started holds the pipes open: end
            // it, and stop listening (a holder dloop cannot reach must not hang the step).
            killer.kill_now();
            crate::reaper::sweep(&spec.idempotency_key);
            swept = true;
            drain_closed(&mut pipes, &mut buf, on_chunk)?;
            pipes = [None, None];
        }
        match stop.level() {
            StopLevel::Now if exit_status.is_none() => {
                stopped = true;
                killer.kill_now();
            }
            StopLevel::Stop if exit_status.is_none() => {
                stopped = true;
                killer.terminate(now);
            }
            _ => {}
        }
        if timed_out.is_none() && exit_status.is_none() {
            timed_out = if wall_deadline.is_some_and(|d| now >= d) {
                Some(ActionTimeout::Wall)
            } else if limits
                .idle_timeout
                .is_some_and(|t| now.duration_since(last_output) >= t)
            {
                Some(ActionTimeout::Idle)
            } else if limits.run_deadline.is_some_and(|d| now >= d) {
                Some(ActionTimeout::Run)
            } else {
                None
            };
            if timed_out.is_some() {
                killer.terminate(now);
            }
        }
        killer.escalate(now);
    }
    let duration = started.elapsed();
    let status = exit_status.expect("the loop ends only after the main process exited");
    drop(registration);
    // Whatever the main process left behind ends with the step: its group, then the orphans.
    killer.kill_now();
    crate::reaper::sweep(&spec.idempotency_key);
    Ok(ProcessEnd {
        status: Some(status),
        spawn_error: None,
        timed_out,
        stopped: stopped && timed_out.is_none(),
        duration,
    })
}

/// Reads what is already in the pipes without waiting, before dloop closes its ends.
fn drain_closed(
    pipes: &mut [Option<Box<dyn ReadFd>>; 2],
    buf: &mut [u8],
    on_chunk: &mut dyn FnMut(Stream, &[u8]) -> io::Result<Flow>,
) -> io::Result<()> {
    for _ in 0..64 {
        let ready = wait_readable(pipes, None, Duration::ZERO)?;
        if !ready.iter().any(|r| *r) {
            return Ok(());
        }
        for (index, is_ready) in ready.into_iter().enumerate() {
            let Some(pipe) = pipes[index].as_mut().filter(|_| is_ready) else {
                continue;
            };
            match pipe.read(buf) {
                Ok(0) | Err(_) => pipes[index] = None,
                // Everything is being killed already: a request to end changes nothing.
                Ok(n) => {
                    on_chunk(stream_of(index), &buf[..n])?;
                }
            }
        }
    }
    Ok(())
}

/// A pipe end we read from and can poll.
trait ReadFd: Read + AsRawFd {}
impl<T: Read + AsRawFd> ReadFd for T {}

fn stream_of(index: usize) -> Stream {
    if index == 1 {
        Stream::Stderr
    } else {
        Stream::Stdout
    }
}

/// A pidfd for `pid`: readable once the process exits. `None` when the kernel has no
/// `pidfd_open`.
#[allow(unsafe_code)]
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd, and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits up to `timeout` until one of the open pipes can be read (data or end of file) or the
/// process behind `exit` has exited; returns which pipes can be read.
#[allow(unsafe_code)]
fn wait_readable(
    pipes: &[Option<Box<dyn ReadFd>>; 2],
    exit: Option<&OwnedFd>,
    timeout: Duration,
) -> io::Result<[bool; 2]> {
    let mut fds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 3];
    for (slot, pipe) in fds.iter_mut().zip(pipes) {
        if let Some(pipe) = pipe {
            // A negative fd is ignored by poll(2), so a closed pipe needs no special case.
            slot.fd = pipe.as_raw_fd();
            slot.events = libc::POLLIN;
        }
    }
    if let Some(exit) = exit {
        fds[2].fd = exit.as_raw_fd();
        fds[2].events = libc::POLLIN;
    }
    // SAFETY: `fds` is a valid array of 3 pollfd structs that lives across the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 3, timeout.as_millis() as libc::c_int) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok([false, false]);
        }
        return Err(err);
    }
    let readable = |p: &libc::pollfd| {
        p.fd >= 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
    };
    Ok([readable(&fds[0]), readable(&fds[1])])
}

/// Sends signals to an action's process group: SIGTERM first, SIGKILL after the grace period.
struct Killer {
    pgid: i32,
    grace: Duration,
    terminated_at: Option<Instant>,
    killed: bool,
}

impl Killer {
    fn new(pgid: i32, grace: Duration) -> Self {
        Self {
            pgid,
            grace,
            terminated_at: None,
            killed: false,
        }
    }

    fn terminate(&mut self, now: Instant) {
        if self.terminated_at.is_none() {
            self.terminated_at = Some(now);
            crate::signals::signal_group(self.pgid, libc::SIGTERM);
        }
    }

    fn escalate(&mut self, now: Instant) {
        if let Some(at) = self.terminated_at
            && now.duration_since(at) >= self.grace
        {
            self.kill_now();
        }
    }

    fn kill_now(&mut self) {
        if !self.killed {
            self.killed = true;
            crate::signals::signal_group(self.pgid, libc::SIGKILL);
        }
    }
}
