//! Runs one action process: `bash -c` (or a runner's argv) in its own process group, with
//! stdout and stderr read concurrently, written to the output file as they arrive, hashed, and
//! cut to a bounded excerpt; per-action `timeout`, `idle_timeout` and the run's deadline end the
//! whole group (SIGTERM, a grace period, then SIGKILL), and so does a stop request.
//!
//! Invariants:
//! - both pipes are drained by their own thread, so a child writing megabytes to either never
//!   blocks on a full pipe (no deadlock past 64 KiB);
//! - when the action's main process exits, whatever it left in its process group is ended, so
//!   no action outlives its step and no stray writer holds the pipes open;
//! - an output larger than the excerpt is fsynced to its file before [`run_action`] returns,
//!   so the log record that points at it is never more durable than the file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
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
    /// Where to note the action's process group while it runs (`<pgid> <idempotency key>`),
    /// so a later `resume`, `cancel` or `stop --force` can end an action its dead runner left.
    pub group_file: Option<(PathBuf, String)>,
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
/// # Errors
/// Only for failures of dloop's own I/O (the output file). A program that cannot be started is
/// a result (`error` is set), not an error.
pub fn run_action(spec: &ActionSpec, stop: &StopFlag) -> io::Result<(ActionResult, Ending)> {
    let started = Instant::now();
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&spec.output_path)?;
    let mut sink = OutputSink::new(file);
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
    if let Some((path, key)) = &spec.group_file {
        // Not synced: it only matters while processes live, and a power loss ends them all.
        std::fs::write(path, format!("{pgid} {key}\n"))?;
    }
    if let (Some(input), Some(mut pipe)) = (spec.stdin.clone(), child.stdin.take()) {
        // A writer thread, so a child that does not read its stdin cannot block us.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    let mut readers = Vec::new();
    for (is_stderr, pipe) in [
        (
            false,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            true,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let Some(mut pipe) = pipe else { continue };
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.send((is_stderr, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }));
    }
    drop(tx);

    let wall_deadline = spec.timeout.map(|t| started + t);
    let mut last_output = Instant::now();
    let mut exited_at: Option<Instant> = None;
    let mut exit_status = None;
    let mut timed_out = None;
    let mut stopped = false;
    let mut killer = Killer::new(pgid, spec.kill_grace);
    loop {
        match rx.recv_timeout(TICK) {
            Ok((is_stderr, bytes)) => {
                last_output = Instant::now();
                sink.write(is_stderr, &bytes)?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
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
        match stop.level() {
            StopLevel::Now => {
                stopped = true;
                killer.kill_now();
            }
            StopLevel::Stop => {
                stopped = true;
                killer.terminate(now);
            }
            StopLevel::None | StopLevel::Drain => {}
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
    for reader in readers {
        let _ = reader.join();
    }
    let status = match exit_status {
        Some(status) => status,
        None => child.wait()?,
    };
    // Whatever the main process left behind in its group ends with the step.
    killer.kill_now();
    reap(&mut child);
    if let Some((path, _)) = &spec.group_file {
        let _ = std::fs::remove_file(path);
    }
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

/// Collects the output: the file, the hash, the head and tail, stderr's own tail.
struct OutputSink {
    file: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    stderr_tail: std::collections::VecDeque<u8>,
}

impl OutputSink {
    fn new(file: File) -> Self {
        Self {
            file: BufWriter::with_capacity(64 * 1024, file),
            hasher: Sha256::new(),
            bytes: 0,
            head: Vec::with_capacity(HEAD),
            tail: std::collections::VecDeque::with_capacity(TAIL),
            stderr_tail: std::collections::VecDeque::new(),
        }
    }

    fn write(&mut self, is_stderr: bool, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        let room = EXCERPT_LIMIT.saturating_sub(self.head.len());
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        push_tail(&mut self.tail, rest, EXCERPT_LIMIT);
        if is_stderr {
            push_tail(&mut self.stderr_tail, bytes, EXCERPT_LIMIT);
        }
        Ok(())
    }

    fn finish(mut self, duration: Duration, output_rel: &str) -> io::Result<ActionResult> {
        self.file.flush()?;
        let complete = self.bytes as usize <= EXCERPT_LIMIT;
        let excerpt = if complete {
            String::from_utf8_lossy(&self.head).into_owned()
        } else {
            // The file holds the whole output; make it durable before the log points at it.
            self.file.get_ref().sync_data()?;
            let head = &self.head[..HEAD.min(self.head.len())];
            let tail: Vec<u8> = self.tail.iter().copied().collect();
            let tail = &tail[tail.len().saturating_sub(TAIL)..];
            format!(
                "{}\n[... {} bytes omitted: full output in {output_rel} ...]\n{}",
                String::from_utf8_lossy(head),
                self.bytes as usize - head.len() - tail.len(),
                String::from_utf8_lossy(tail)
            )
        };
        let stderr: Vec<u8> = self.stderr_tail.into_iter().collect();
        Ok(ActionResult {
            duration_ms: duration.as_millis() as u64,
            bytes: self.bytes,
            sha256: hex(&self.hasher.finalize()),
            excerpt,
            complete,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            output_path: output_rel.to_owned(),
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

/// The file in a run folder that names the running action's process group.
pub const GROUP_FILE: &str = "action.pgid";

/// Ends an action that a dead runner left running (its group is named in the run folder's
/// [`GROUP_FILE`]), so a re-run never runs beside the old attempt. Returns whether a group was
/// signalled.
///
/// A process group id cannot be reused while any member of the group lives, so a live group
/// with that id is the action's, unless its leader is a new process: that case is told apart
/// by the leader's environment, which carries the action's `DLOOP_IDEMPOTENCY_KEY`.
pub fn end_leftover_action(run_dir: &std::path::Path) -> bool {
    let path = run_dir.join(GROUP_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return false;
    };
    let mut parts = text.split_whitespace();
    let pgid = parts.next().and_then(|p| p.parse::<i32>().ok());
    let key = parts.next().unwrap_or_default().to_owned();
    let mut ended = false;
    if let Some(pgid) = pgid.filter(|p| *p > 1)
        && crate::signals::group_exists(pgid)
    {
        // An empty environment is what a process shows while it is in execve (bash replacing
        // itself with the command): that is still ours, so only a non-empty environment without
        // our key marks a stranger.
        let leader_is_other = std::fs::read(format!("/proc/{pgid}/environ")).is_ok_and(|env| {
            let wanted = format!("DLOOP_IDEMPOTENCY_KEY={key}");
            !env.is_empty() && !env.split(|b| *b == 0).any(|var| var == wanted.as_bytes())
        });
        if !leader_is_other {
            crate::signals::signal_group(pgid, libc::SIGKILL);
            ended = true;
        }
    }
    let _ = std::fs::remove_file(&path);
    ended
}
