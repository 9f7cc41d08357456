//! Errors of the runtime.

use std::path::PathBuf;

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
    /// The loop uses something this version cannot run.
    #[error("{0}")]
    Unsupported(String),
    /// No free run id could be made (every try collided).
    #[error("could not create a run folder for loop `{0}`: every id tried already exists")]
    NoFreeId(String),
    /// The run id is not valid for this loop name.
    #[error(transparent)]
    Name(#[from] dloop_core::run_id::NameError),
}
