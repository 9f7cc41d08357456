//! `--notify CMD`: a command run when a session of a run ends (completed, failed, cancelled,
//! paused, timed out), for desktop or chat notifications.
//!
//! It runs as `bash -c CMD` in the project root with stdin from `/dev/null`, its output where
//! dloop's goes (the terminal, or `console.log` for a background run), and `DLOOP_RUN_ID`,
//! `DLOOP_STATUS`, `DLOOP_REASON` (the pause reason or a failed run's error; empty otherwise)
//! and `DLOOP_LOOP` in its environment. dloop waits for it, so nothing it starts is orphaned
//! by dloop's exit. It never changes the run or dloop's exit status: a command that cannot
//! start or fails is a warning on stderr.

use std::path::Path;
use std::process::{Command, Stdio};

use dloop_core::state::RunStatus;
use dloop_runtime::runs::RunEnd;

use crate::commands::Ctx;

/// Runs the notify command for the end of a session, if one was given.
pub(crate) fn after_session(ctx: &Ctx, command: Option<&str>, root: &Path, end: &RunEnd) {
    let Some(command) = command else {
        return;
    };
    let state = &end.state;
    let reason = match (state.pause_reason, end.status) {
        (Some(reason), _) => reason.as_str().to_owned(),
        (None, RunStatus::Failed) => state
            .message
            .clone()
            .or_else(|| state.last_error.clone())
            .unwrap_or_default(),
        (None, _) => String::new(),
    };
    let outcome = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(root)
        .stdin(Stdio::null())
        .env("DLOOP_RUN_ID", &end.run_id)
        .env("DLOOP_STATUS", end.status.as_str())
        .env("DLOOP_REASON", reason)
        .env("DLOOP_LOOP", &state.loop_name)
        .status();
    match outcome {
        Ok(status) if status.success() => {}
        Ok(status) => ctx.ui.status(&format!(
            "warning: the --notify command failed ({status}); the run is not affected\n"
        )),
        Err(e) => ctx.ui.status(&format!(
            "warning: the --notify command could not start: {e}; the run is not affected\n"
        )),
    }
}
