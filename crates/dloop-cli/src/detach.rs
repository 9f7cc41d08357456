//! Background runs (`run -b`, `resume -b`, DESIGN.md §7): the parent re-executes this binary
//! as a detached child and returns once the child really holds its run.
//!
//! The protocol:
//! 1. The parent creates a console file in `.loops/.dloop/background/` and a pipe, and starts
//!    the same command line again (so INPUT, `-c` and every flag reach the child unchanged)
//!    with two hidden flags: `--ready-fd N` (the pipe's write end) and `--console PATH`. The
//!    child runs in a new session (`setsid`: no controlling terminal, so closing the terminal
//!    sends it no SIGHUP), with stdin from `/dev/null` and stdout and stderr in the console file.
//! 2. The child drives the run as in the foreground. At its first durable record it holds its
//!    run lock: it moves its console into the run folder (`console.log`, appended to across
//!    sessions), writes the run id and a newline into the pipe, and closes it.
//! 3. The parent reads the pipe. A run id: it prints it and exits 0. End of file without one:
//!    the child failed before holding its run; the parent waits for it, prints what it wrote
//!    (its error) and exits with its code.
//!
//! This is the one module of the CLI with `unsafe` (file descriptors across `exec`); each
//! block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dloop_core::{Record, RunState};
use dloop_runtime::actions::AgentActivity;
use dloop_runtime::actions::output::Stream;
use dloop_runtime::observer::RunObserver;

use crate::commands::Ctx;
use crate::error::CliError;
use crate::exit::Exit;
use crate::storage::Storage;

/// The console file of a run's background sessions, in its run folder.
pub(crate) const CONSOLE_FILE: &str = "console.log";

/// The hidden flags a background child gets (`clap` flattens them into `run` and `resume`).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct ChildFlags {
    /// Internal: the pipe to announce the run id on (set by `-b`).
    #[arg(long, hide = true, value_name = "FD")]
    pub(crate) ready_fd: Option<i32>,
    /// Internal: the console file to move into the run folder (set by `-b`).
    #[arg(long, hide = true, value_name = "PATH")]
    pub(crate) console: Option<PathBuf>,
}

/// Starts this command line again as a detached background child and waits until it holds
/// its run (or fails). `subcommand` is `run` or `resume`.
pub(crate) fn spawn(ctx: &Ctx, storage: &Storage, subcommand: &str) -> Result<Exit, CliError> {
    let dir = storage.background_dir();
    std::fs::create_dir_all(&dir).map_err(|e| CliError::io("creating the background folder", e))?;
    let console_path = dir.join(format!(
        "console-{}-{}.log",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let console = std::fs::OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(&console_path)
        .map_err(|e| CliError::io("creating the background console", e))?;
    // Our own reading handle: it still reads the file after the child moved it.
    let mut console_reader =
        File::open(&console_path).map_err(|e| CliError::io("opening the console", e))?;
    let (reader, writer) =
        std::io::pipe().map_err(|e| CliError::io("creating the readiness pipe", e))?;
    let exe = std::env::current_exe().map_err(|e| CliError::io("finding the dloop binary", e))?;
    let ready_fd: RawFd = writer.as_raw_fd();
    let mut command = Command::new(exe);
    command
        .args(child_args(
            std::env::args_os().skip(1),
            subcommand,
            ready_fd,
            &console_path,
        ))
        .current_dir(&ctx.cwd)
        .stdin(Stdio::null())
        .stdout(
            console
                .try_clone()
                .map_err(|e| CliError::io("sharing the console", e))?,
        )
        .stderr(console);
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (setsid, fcntl) on values copied into it; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The pipe was opened close-on-exec; the child needs to keep its write end.
            if libc::fcntl(ready_fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| CliError::io("starting the background run", e))?;
    // Only the child may hold the write end now, so its exit ends our read.
    drop(writer);
    let mut line = String::new();
    let _ = BufReader::new(reader).read_line(&mut line);
    if let Some(run_id) = line.strip_suffix('\n').filter(|id| !id.is_empty()) {
        ctx.ui.print(&format!("{run_id}\n"))?;
        ctx.ui.status(&format!(
            "started run {run_id} in the background; `dloop logs -f {run_id}` follows it, \
             `dloop stop {run_id}` pauses it\n"
        ));
        return Ok(Exit::Ok);
    }
    let status = child
        .wait()
        .map_err(|e| CliError::io("waiting for the background run", e))?;
    let mut said = String::new();
    let _ = console_reader.read_to_string(&mut said);
    let _ = std::fs::remove_file(&console_path);
    ctx.ui.status(&said);
    ctx.ui.status(&format!(
        "error: the background run ended before it started ({status})\n"
    ));
    // The child's own exit status, as one of ours (a signal or an unknown code is a fault).
    Ok(match status.code() {
        Some(1) => Exit::Failed,
        Some(2) => Exit::Usage,
        Some(3) => Exit::Paused,
        Some(4) => Exit::TimedOut,
        Some(130) => Exit::Interrupted,
        _ => Exit::Fault,
    })
}

/// This command line for the child: the hidden flags right after the subcommand, so they are
/// flags even when the user's arguments end with `-- INPUT`.
fn child_args(
    args: impl Iterator<Item = OsString>,
    subcommand: &str,
    ready_fd: RawFd,
    console: &Path,
) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut inserted = false;
    for arg in args {
        let is_subcommand = !inserted && arg == subcommand;
        out.push(arg);
        if is_subcommand {
            out.push("--ready-fd".into());
            out.push(ready_fd.to_string().into());
            out.push("--console".into());
            out.push(console.as_os_str().to_owned());
            inserted = true;
        }
    }
    out
}

/// A background child's promise to its parent: kept at the first durable record.
#[derive(Debug)]
pub(crate) struct Ready {
    pipe: File,
    console: PathBuf,
}

impl Ready {
    /// The child's end of the protocol, when this process is a background child.
    pub(crate) fn from_flags(flags: &ChildFlags) -> Option<Ready> {
        let (Some(fd), Some(console)) = (flags.ready_fd, flags.console.clone()) else {
            return None;
        };
        // Only the fds our parent set up qualify: never stdin, stdout or stderr, and only one
        // that is open (fcntl F_GETFD fails on a closed descriptor).
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return None;
        }
        // SAFETY: the descriptor is open (checked above) and nothing else in this process owns
        // it: the parent passed it to us alone, and it is taken exactly once, here. Marking it
        // close-on-exec keeps actions from inheriting it.
        let pipe = unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            File::from_raw_fd(fd)
        };
        Some(Ready { pipe, console })
    }

    /// Moves the console into the run folder and tells the parent the run id.
    fn announce(mut self, run_id: &str, run_dir: Option<PathBuf>) {
        if let Some(dir) = run_dir {
            move_console(&self.console, &dir.join(CONSOLE_FILE));
        }
        let _ = writeln!(self.pipe, "{run_id}");
        // Dropping `self` closes the pipe: the parent's read ends.
    }
}

/// Appends what the child wrote so far to the run's `console.log` and points stdout and
/// stderr there, then removes the temporary console. On any failure output stays where it is.
fn move_console(from: &Path, to: &Path) {
    let Ok(mut target) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(to)
    else {
        return;
    };
    let mut so_far = Vec::new();
    if File::open(from)
        .and_then(|mut f| f.read_to_end(&mut so_far))
        .is_err()
        || target.write_all(&so_far).is_err()
    {
        return;
    }
    let fd = target.as_raw_fd();
    // SAFETY: dup2 onto 1 and 2 replaces this process's stdout and stderr with the console;
    // `target` stays valid for the call, and std's handles to 1 and 2 keep working on the new
    // file (they hold the numbers, not the files).
    let moved = unsafe { libc::dup2(fd, 1) >= 0 && libc::dup2(fd, 2) >= 0 };
    if moved {
        let _ = std::fs::remove_file(from);
    }
}

/// Wraps the session's observer: announces the run to the parent at its first durable record
/// (the run lock is held from the run's creation, and nothing has run yet).
pub(crate) struct Announce<'a> {
    inner: &'a mut dyn RunObserver,
    ready: Option<Ready>,
    storage: &'a Storage,
}

impl<'a> Announce<'a> {
    /// `ready` is `None` in the foreground: then this only forwards.
    pub(crate) fn new(
        inner: &'a mut dyn RunObserver,
        ready: Option<Ready>,
        storage: &'a Storage,
    ) -> Self {
        Self {
            inner,
            ready,
            storage,
        }
    }
}

impl RunObserver for Announce<'_> {
    fn on_record(&mut self, record: &Record, state: &RunState) {
        if let Some(ready) = self.ready.take() {
            ready.announce(&state.run_id, self.storage.local_dir(&state.run_id).ok());
        }
        self.inner.on_record(record, state);
    }

    fn on_action_start(&mut self, pending: &dloop_core::state::PendingAction, state: &RunState) {
        self.inner.on_action_start(pending, state);
    }

    fn on_output(&mut self, stream: Stream, bytes: &[u8]) {
        self.inner.on_output(stream, bytes);
    }

    fn on_agent_activity(&mut self, activity: &AgentActivity) {
        self.inner.on_agent_activity(activity);
    }

    fn on_wait(&mut self, wait: std::time::Duration, why: &str) {
        self.inner.on_wait(wait, why);
    }

    fn on_child_record(&mut self, depth: u32, record: &Record, state: &RunState) {
        self.inner.on_child_record(depth, record, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_flags_go_right_after_the_subcommand() {
        let args = ["run", "fix", "-b", "--", "run"].map(OsString::from);
        let out = child_args(args.into_iter(), "run", 7, Path::new("/c.log"));
        let out: Vec<_> = out
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            out,
            [
                "run",
                "--ready-fd",
                "7",
                "--console",
                "/c.log",
                "fix",
                "-b",
                "--",
                "run"
            ]
        );
    }
}
