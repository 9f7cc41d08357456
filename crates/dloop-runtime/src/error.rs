//! Errors of the runtime, and their [`RuntimeErrorKind`]: what a caller matches to pick a
//! reaction (the CLI's exit code) without a catch-all arm.

use std::path::PathBuf;

use dloop_store::StoreErrorKind;

/// What kind of failure a [`RuntimeError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Not `#[non_exhaustive]`: callers match every kind, so a new one makes them choose a
// reaction (an exit code) instead of falling into a catch-all arm.
pub enum RuntimeErrorKind {
    /// The store failed; its own kind says how.
    Store(StoreErrorKind),
    /// The request cannot be done as asked (finished run, changed file without `--reload`,
    /// something this version cannot run).
    Refused,
    /// A loop file given with `--reload` is invalid.
    Invalid,
    /// A name or id on the command line is not valid.
    Usage,
    /// Data dloop stored earlier cannot be read back (a stored definition).
    Corrupt,
    /// dloop's own I/O failed (an action's output file).
    Io,
    /// dloop could not do its own job (no free run id).
    Internal,
}

/// Everything that can keep the runtime from driving a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The store failed (log, snapshot, lock, run folder).
    #[error(transparent)]
    Store(#[from] dloop_store::StoreError),
    /// An action's output file could not be written.
    #[error("cannot write the action output {}", path.display())]
    Output {
        /// The output file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file of the run (a reloaded definition) could not be written or read.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The run cannot be resumed (finished, out of time, unknown `--skip-to`).
    #[error(transparent)]
    Resume(#[from] dloop_core::transition::ResumeError),
    /// The loop file changed since the run started.
    #[error(
        "the loop file of run {run_id} changed since the run started; resume with --reload to \
         use the new file, or restore the old one"
    )]
    DefinitionChanged {
        /// The run.
        run_id: String,
    },
    /// `--reload` with a definition that lacks the run's current state.
    #[error(
        "the changed loop file has no state `{state}`, where run {run_id} is; use --skip-to STATE"
    )]
    ReloadMissingState {
        /// The run.
        run_id: String,
        /// The state it is in.
        state: String,
    },
    /// The run's stored definition (or a reloaded one) cannot be read back.
    #[error("the loop definition stored with run {run_id} does not parse: {message}")]
    StoredDefinition {
        /// The run.
        run_id: String,
        /// Why.
        message: String,
    },
    /// `--reload` with a loop file that `dloop validate` rejects.
    #[error(
        "the changed loop file of run {run_id} is not valid ({problems} problem(s); first: \
         {first}); fix it and resume again, or restore the old file"
    )]
    InvalidReload {
        /// The run.
        run_id: String,
        /// How many diagnostics.
        problems: usize,
        /// The first one's message.
        first: String,
    },
    /// The loop uses something this version cannot run.
    #[error("{0}")]
    Unsupported(String),
    /// No free run id could be made (every try collided).
    #[error("could not create a run folder for loop `{0}`: every id tried already exists")]
    NoFreeId(String),
    /// The run id is not valid for this loop name.
    #[error(transparent)]
    Name(#[from] dloop_core::run_id::NameError),
    /// The scope overlaps one a live run holds (or waits for), and `--queue` was not given.
    #[error(
        "scope {scope} overlaps run {holder} (loop `{holder_loop}`, scope {holder_scope}), \
         which {}; add --queue to wait for it, or `dloop stop {holder}` to pause it",
        if *holder_waiting { "is waiting for it" } else { "holds it" }
    )]
    ScopeConflict {
        /// The run in the way.
        holder: String,
        /// Its loop.
        holder_loop: String,
        /// Its scope.
        holder_scope: String,
        /// It waits in the queue (it does not hold the scope yet).
        holder_waiting: bool,
        /// The scope asked for.
        scope: String,
    },
    /// A `scope:` path leaves the project.
    #[error(
        "scope `{scope}` is outside the project root {}; scope paths are relative to it",
        root.display()
    )]
    ScopeOutside {
        /// The path as the loop file says it.
        scope: String,
        /// The project root.
        root: PathBuf,
    },
    /// The scope registry is unreadable.
    #[error(
        "the scope registry {} is damaged ({message}); delete it when no dloop run is live",
        path.display()
    )]
    ScopeRegistry {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A git command failed (worktrees, checkpoints).
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// A run's worktree cannot be used: not a git repository, the folder vanished, a bad
    /// `--branch-from`.
    #[error("{0}")]
    Worktree(String),
    /// A checkpoint cannot be shown or restored (none recorded, the working tree has changes
    /// that are not the run's, a tree git no longer has).
    #[error("{0}")]
    Checkpoint(String),
    /// A parallel state file cannot be used (unreadable, from a newer dloop, a migration that
    /// would lose a worker), or a parallel command is refused.
    #[error("{0}")]
    Parallel(String),
    /// A fork is refused: the step is not in the source run, or the source cannot be copied.
    #[error("{0}")]
    Fork(String),
    /// A replay is refused: the source run was recorded without replay keys, or its recorded
    /// output is damaged.
    #[error("{0}")]
    Replay(String),
    /// A parent cannot be resumed: the sub-loop run of its current step is live in another
    /// process (`dloop resume CHILD`), and the parent would drive it too.
    #[error(
        "run {child}, the sub-loop run of run {run_id}'s current step, is live in another \
         process; `dloop resume {run_id}` takes its result once it has paused or ended"
    )]
    ChildLive {
        /// The parent.
        run_id: String,
        /// Its live child.
        child: String,
    },
}

impl RuntimeError {
    /// The kind of failure. The match names every variant, so a new one cannot ship without a
    /// kind (and so an exit code).
    pub fn kind(&self) -> RuntimeErrorKind {
        match self {
            Self::Store(e) => RuntimeErrorKind::Store(e.kind()),
            Self::Resume(_)
            | Self::DefinitionChanged { .. }
            | Self::ReloadMissingState { .. }
            | Self::Unsupported(_)
            | Self::ScopeConflict { .. }
            | Self::Worktree(_)
            | Self::Checkpoint(_)
            | Self::Parallel(_)
            | Self::Fork(_)
            | Self::Replay(_)
            | Self::ChildLive { .. } => RuntimeErrorKind::Refused,
            Self::Git(_) => RuntimeErrorKind::Io,
            Self::InvalidReload { .. } | Self::ScopeOutside { .. } => RuntimeErrorKind::Invalid,
            Self::ScopeRegistry { .. } => RuntimeErrorKind::Corrupt,
            Self::Name(_) => RuntimeErrorKind::Usage,
            Self::StoredDefinition { .. } => RuntimeErrorKind::Corrupt,
            Self::Output { .. } | Self::Io { .. } => RuntimeErrorKind::Io,
            Self::NoFreeId(_) => RuntimeErrorKind::Internal,
        }
    }
}

/// Why a project's `.loops/config.yaml` cannot be used. Not `non_exhaustive`: the CLI matches
/// every variant, so a new one cannot ship without someone choosing how it is shown.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid config.
    #[error("{} is not a valid config ({} problem(s))", path.display(), diagnostics.len())]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Its text, for rendering the diagnostics with their source lines.
        text: String,
        /// Every problem, with its span.
        diagnostics: Vec<dloop_core::diagnostic::Diagnostic>,
    },
}
