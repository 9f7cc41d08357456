//! The action-runner seam: how a session runs a state's action without knowing what kind of
//! action it is.
//!
//! The session renders the action's text (a shell command, later a prompt), opens its output in
//! the run's stream, and hands both to an [`ActionRunner`] with the environment, the limits and
//! the stop flag. The runner starts whatever it runs, passes every chunk of output to
//! [`ActionIo::chunk`] as it arrives (which puts it on disk and in front of watchers), and says
//! how the action ended. The session turns that into the log's records; a runner never writes
//! the log, so every runner gets the same durability for free.
//!
//! Runners: [`shell::ShellRunner`] (`shell:` actions, `bash`) and [`agents::AgentRunner`]
//! (`prompt:` actions, one per runner profile of [`agents::Agents`]); sub-loops plug in beside
//! them. A runner that parses a line-oriented stream (an agent's
//! stream-json) wraps its chunks in a [`lines::LineSplitter`].

pub mod agents;
pub mod lines;
pub mod output;
pub mod shell;

use std::io;
use std::path::Path;

use dloop_core::event::AgentReport;
use dloop_core::state::PendingAction;

use crate::process::{Limits, ProcessEnd, StopFlag};
use output::{StepOutput, Stream};

/// One action to run, rendered.
#[derive(Debug)]
pub struct ActionRequest<'a> {
    /// The step it belongs to: state, step number, idempotency key.
    pub pending: &'a PendingAction,
    /// The rendered action: the shell script (bytes: a `:raw` value may make it non-UTF-8), or
    /// the prompt.
    pub text: &'a [u8],
    /// The `DLOOP_*` environment every action sees.
    pub env: &'a [(String, String)],
    /// The working directory (the project root, or the run's worktree).
    pub cwd: &'a Path,
    /// A private folder of the run for the runner's own files (a script too long for one
    /// argument); named by step number, never by a state name.
    pub scratch: &'a Path,
    /// Time limits.
    pub limits: Limits,
    /// For a prompt action: the agent call (profile and the state's overrides).
    pub agent: Option<AgentCall<'a>>,
}

/// A prompt action's agent call: the runner profile and what the state overrides.
#[derive(Debug, Clone, Copy)]
pub struct AgentCall<'a> {
    /// The runner profile's name (`claude`, `codex`, `gemini`, `opencode`, or a config one).
    pub profile: &'a str,
    /// The state's `model`, over the profile's.
    pub model: Option<&'a str>,
    /// The state's extra arguments, after the profile's.
    pub extra_args: &'a [String],
    /// Continue this agent session (an interrupted attempt's) where the profile can; `None`
    /// starts a fresh session.
    pub resume_session: Option<&'a str>,
    /// The state's `max_turns`, over the profile's: the runner ends the agent's process when
    /// its stream shows more turns (the CLIs' own caps overrun).
    pub max_turns: Option<u64>,
}

/// What a runner learns while its action runs and the run must keep even if dloop dies before
/// the action ends (the session waits for nothing: it records the note at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionNote {
    /// The agent's session id, from the stream's first lines: an action killed mid-stream is
    /// continued in this session on resume.
    SessionStarted {
        /// The id, as the CLI's resume flag takes it.
        session_id: String,
    },
}

/// Where a running action's output goes: the run's output stream (through the step's
/// [`StepOutput`]) and whoever watches live.
pub struct ActionIo<'a, 'b> {
    /// The step's output in the run's stream.
    pub output: &'a mut StepOutput<'b>,
    /// Live watchers (the CLI's `-v` and live line).
    pub watch: &'a mut dyn FnMut(Stream, &[u8]),
    /// Stop requests.
    pub stop: &'a StopFlag,
    /// Notes the run must keep at once ([`ActionNote`]).
    pub note: &'a mut dyn FnMut(ActionNote),
    /// What an agent does, parsed from its stream as it arrives, for live watchers.
    pub activity: &'a mut dyn FnMut(&AgentActivity),
}

/// One thing an agent did, as a watcher shows it: parsed from the CLI's stream by its runner
/// (and by `dloop output` from the stream kept in the run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentActivity {
    /// The agent's session began (model, session id), as the CLI's first event says.
    Started {
        /// The model, when the CLI names it.
        model: Option<String>,
        /// The session id.
        session_id: Option<String>,
    },
    /// Text the assistant wrote.
    Text(String),
    /// A tool call: its name and its first argument (a command, a path).
    Tool {
        /// The tool's name (`Bash`, `Edit`, `command_execution`, ...).
        name: String,
        /// Its first argument, as text.
        detail: String,
    },
    /// An error the CLI reported (a failed tool, an API error, a limit).
    Error(String),
    /// The CLI's terminal event: how the invocation ended.
    Finished {
        /// The outcome.
        outcome: dloop_core::event::AgentOutcome,
        /// The final text or error message, shortened.
        summary: String,
    },
}

impl ActionIo<'_, '_> {
    /// Takes one chunk of output: on disk first, then shown.
    ///
    /// # Errors
    /// The output stream cannot be written.
    pub fn chunk(&mut self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        self.output.write(stream, bytes)?;
        (self.watch)(stream, bytes);
        Ok(())
    }
}

/// How an action ended, as a runner reports it.
#[derive(Debug, Clone)]
pub struct ActionOutcome {
    /// The process's end (status, timeouts, stop).
    pub process: ProcessEnd,
    /// The agent's session id, for runners that have one.
    pub session_id: Option<String>,
    /// What an agent runner read from its CLI's stream.
    pub agent: Option<AgentReport>,
}

impl From<ProcessEnd> for ActionOutcome {
    fn from(process: ProcessEnd) -> Self {
        Self {
            process,
            session_id: None,
            agent: None,
        }
    }
}

/// Runs one kind of action.
pub trait ActionRunner: Send + Sync {
    /// Runs `request` to its end, passing its output through `io` as it arrives.
    ///
    /// # Errors
    /// Failures of dloop's own I/O (the output stream, the scratch folder). An action that
    /// cannot start is an outcome ([`ProcessEnd::spawn_error`]), not an error.
    fn run(
        &self,
        request: &ActionRequest<'_>,
        io: &mut ActionIo<'_, '_>,
    ) -> io::Result<ActionOutcome>;
}

/// Writes a file of the run's scratch folder (a long script, a prompt file): 0600, created or
/// replaced, never through a symbolic link, neither the file's name (`O_NOFOLLOW`) nor its
/// folder (a planted `scripts -> /elsewhere` must not make dloop write there); the folder is
/// created 0700. Not synced: such a file lives only as long as its action, and a re-run writes
/// it again.
///
/// # Errors
/// The folder or file cannot be made, or the folder is a link.
pub fn write_scratch_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        if !std::fs::symlink_metadata(dir)?.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a folder (a symbolic link?): refusing to write through it",
                dir.display()
            )));
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(bytes)
}
