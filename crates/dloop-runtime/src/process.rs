//! Runs one action process: `bash -c` (or a runner's argv) in its own process group, with
//! stdout and stderr read concurrently, written to the output file as they arrive, hashed, and
//! cut to a bounded excerpt; per-action `timeout`, `idle_timeout` and the run's deadline end the
//! whole group (SIGTERM, a grace period, then SIGKILL), and so does a stop request.
//!
//! Invariants:
//! - both pipes are polled together and drained as data arrives, so a child writing megabytes
//!   to either never blocks on a full pipe (no deadlock past 64 KiB);
//! - when the action's main process exits, whatever it left in its process group is ended, so
//!   no action outlives its step and no stray writer holds the pipes open;
//! - an output that fits the log's excerpt (4 KiB) is kept whole in the log and gets no file;
//!   a larger one is written to its file, which is fsynced before [`run_action`] returns, so
//!   the log record that points at it is never more durable than the file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use dloop_core::event::{ActionResult, ActionTimeout};
use sha2::{Digest, Sha256};

/// Outputs up to this size are kept whole in the log; larger ones keep head and tail.
pub const EXCERPT_LIMIT: usize = 4096;
const HEAD: usize = EXCERPT_LIMIT / 2;
const TAIL: usize = EXCERPT_LIMIT / 2;
/// How often a running action checks for stop requests and deadlines when it is quiet.
const TICK: Duration = Duration::from_millis(20);
/// How long pipes may stay open after the main process exited before the group is ended.
const LINGER: Duration = Duration::from_millis(200);

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
    /// End the action (TERM, grace, KILL) and pause (`dloop stop`, first Ctrl-C).
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

    /// The raw atomic, for signal handlers.
    pub fn atomic(&self) -> &AtomicU8 {
        &self.0
    }
}

/// One action to run.
#[derive(Debug, Clone)]
pub struct ActionSpec {
    /// The program and its arguments (`["bash", "-c", cmd]`).
    pub argv: Vec<String>,
    /// Extra environment (`DLOOP_*`).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Bytes written to stdin (then closed); `None` gives `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// The state's `timeout`.
    pub timeout: Option<Duration>,
    /// The state's `idle_timeout`.
    pub idle_timeout: Option<Duration>,
    /// When the run's own timeout ends.
    pub run_deadline: Option<Instant>,
    /// The output file (created 0600; must not exist).
    pub output_path: PathBuf,
    /// Where the output path is, relative to the run folder, for the log.
    pub output_rel: String,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

/// How an action ended, beyond its [`ActionResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited (or was ended by a timeout; see `timed_out`).
    Finished,
    /// A stop request ended it: it did not finish and must not be recorded as finished.
    Stopped,
}

/// Runs the action to its end.
///
/// One thread does everything: it `poll`s both pipes (so neither can fill up and block the
/// child), writes what arrives, and between reads checks the stop flag, the deadlines and
/// whether the main process has exited. No thread is started per action: a step's cost
/// should stay near one `fdatasync`.
///
/// # Errors
/// Only for failures of dloop's own I/O (the output file). A program that cannot be started is
/// a result (`error` is set), not an error.
pub fn run_action(spec: &ActionSpec, stop: &StopFlag) -> io::Result<(ActionResult, Ending)> {
    let started = Instant::now();
    let mut sink = OutputSink::new(spec.output_path.clone());
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
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            let message = format!("could not start `{}`: {err}", spec.argv[0]);
            let mut result = sink.finish(started.elapsed(), &spec.output_rel)?;
            result.error = Some(message);
            return Ok((result, Ending::Finished));
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
    let mut buf = vec![0u8; 64 * 1024];
    let wall_deadline = spec.timeout.map(|t| started + t);
    let mut last_output = Instant::now();
    let mut exited_at: Option<Instant> = None;
    let mut exit_status = None;
    let mut timed_out = None;
    let mut stopped = false;
    let mut killer = Killer::new(pgid, spec.kill_grace);
    while pipes.iter().any(Option::is_some) {
        let ready = wait_readable(&pipes, TICK)?;
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
                    sink.write(index == 1, &buf[..n])?;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => pipes[index] = None,
            }
        }
        let now = Instant::now();
        if exit_status.is_none() {
            exit_status = child.try_wait()?;
            if exit_status.is_some() {
                exited_at = Some(now);
            }
        }
        if exited_at.is_some_and(|at| now.duration_since(at) > LINGER) {
            // The main process is gone but something it started holds the pipes open.
            killer.kill_now();
        }
        // A stop that comes after the main process exited on its own ends nothing: the action
        // finished, and is recorded as finished (never re-run).
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
            } else if spec
                .idle_timeout
                .is_some_and(|t| now.duration_since(last_output) >= t)
            {
                Some(ActionTimeout::Idle)
            } else if spec.run_deadline.is_some_and(|d| now >= d) {
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
    let status = match exit_status {
        Some(status) => status,
        None => child.wait()?,
    };
    // Whatever the main process left behind in its group ends with the step.
    killer.kill_now();
    reap(&mut child);
    let mut result = sink.finish(started.elapsed(), &spec.output_rel)?;
    result.exit_code = status.code();
    result.signal = status.signal();
    result.timed_out = timed_out;
    let ending = if stopped && timed_out.is_none() {
        Ending::Stopped
    } else {
        Ending::Finished
    };
    Ok((result, ending))
}

/// A pipe end we read from and can poll.
trait ReadFd: Read + AsRawFd {}
impl<T: Read + AsRawFd> ReadFd for T {}

/// Waits up to `timeout` until one of the open pipes can be read (data or end of file);
/// returns which ones can.
#[allow(unsafe_code)]
fn wait_readable(pipes: &[Option<Box<dyn ReadFd>>; 2], timeout: Duration) -> io::Result<[bool; 2]> {
    let mut fds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 2];
    for (slot, pipe) in fds.iter_mut().zip(pipes) {
        if let Some(pipe) = pipe {
            // A negative fd is ignored by poll(2), so a closed pipe needs no special case.
            slot.fd = pipe.as_raw_fd();
            slot.events = libc::POLLIN;
        }
    }
    // SAFETY: `fds` is a valid array of 2 pollfd structs that lives across the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout.as_millis() as libc::c_int) };
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

fn reap(child: &mut Child) {
    let _ = child.try_wait();
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

/// Collects the output: the hash, the head and tail, stderr's own tail, and (once the output
/// outgrows the excerpt) the file. An output that fits the excerpt is kept whole in the log
/// and gets no file: creating a file per step would add a metadata write to every step's sync.
struct OutputSink {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    hasher: Sha256,
    bytes: u64,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    stderr_tail: std::collections::VecDeque<u8>,
}

impl OutputSink {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            hasher: Sha256::new(),
            bytes: 0,
            head: Vec::with_capacity(HEAD),
            tail: std::collections::VecDeque::with_capacity(TAIL),
            stderr_tail: std::collections::VecDeque::new(),
        }
    }

    fn write(&mut self, is_stderr: bool, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        let room = EXCERPT_LIMIT.saturating_sub(self.head.len());
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        push_tail(&mut self.tail, rest, EXCERPT_LIMIT);
        if is_stderr {
            push_tail(&mut self.stderr_tail, bytes, EXCERPT_LIMIT);
        }
        match &mut self.file {
            Some(file) => file.write_all(bytes)?,
            None if self.bytes as usize > EXCERPT_LIMIT => {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&self.path)?;
                let mut file = BufWriter::with_capacity(64 * 1024, file);
                // Everything so far is the head plus this chunk's part beyond it.
                file.write_all(&self.head)?;
                file.write_all(rest)?;
                self.file = Some(file);
            }
            None => {}
        }
        Ok(())
    }

    fn finish(self, duration: Duration, output_rel: &str) -> io::Result<ActionResult> {
        let complete = self.file.is_none();
        let excerpt = match self.file {
            None => String::from_utf8_lossy(&self.head).into_owned(),
            Some(mut file) => {
                file.flush()?;
                // The file holds the whole output; make it durable before the log points at it.
                file.get_ref().sync_data()?;
                let head = &self.head[..HEAD.min(self.head.len())];
                let tail: Vec<u8> = self.tail.iter().copied().collect();
                let tail = &tail[tail.len().saturating_sub(TAIL)..];
                format!(
                    "{}\n[... {} bytes omitted: full output in {output_rel} ...]\n{}",
                    String::from_utf8_lossy(head),
                    self.bytes as usize - head.len() - tail.len(),
                    String::from_utf8_lossy(tail)
                )
            }
        };
        let stderr: Vec<u8> = self.stderr_tail.into_iter().collect();
        Ok(ActionResult {
            duration_ms: duration.as_millis() as u64,
            bytes: self.bytes,
            sha256: hex(&self.hasher.finalize()),
            excerpt,
            complete,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            output_path: if complete {
                String::new()
            } else {
                output_rel.to_owned()
            },
            ..ActionResult::default()
        })
    }
}

fn push_tail(tail: &mut std::collections::VecDeque<u8>, bytes: &[u8], limit: usize) {
    let bytes = &bytes[bytes.len().saturating_sub(limit)..];
    let overflow = (tail.len() + bytes.len()).saturating_sub(limit);
    tail.drain(..overflow.min(tail.len()));
    tail.extend(bytes);
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
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
    let mut groups = std::collections::BTreeSet::new();
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
fn process_group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}
