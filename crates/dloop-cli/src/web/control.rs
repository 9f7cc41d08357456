//! The web view's two changes, stop and resume (only with `--allow-control`; `access.rs`
//! checks the request first). Each runs this same binary as `dloop stop RUN` or `dloop resume
//! RUN --background` in the project, so the page does exactly what the commands do, with
//! their checks and messages; the run id is one argument (already checked to name a run), never
//! shell text.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Serialize;

/// What the page asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// `dloop stop RUN`.
    Stop,
    /// `dloop resume RUN --background`.
    Resume,
}

impl Action {
    /// The action a URL segment names.
    pub(crate) fn from_segment(segment: &str) -> Option<Action> {
        match segment {
            "stop" => Some(Action::Stop),
            "resume" => Some(Action::Resume),
            _ => None,
        }
    }
}

/// The answer to a change (wire type of the POST routes).
#[derive(Debug, Serialize)]
pub(crate) struct ControlJson {
    /// Whether the command succeeded.
    pub(crate) ok: bool,
    /// Its message (what `dloop stop`/`resume` printed).
    pub(crate) message: String,
}

/// Runs the command for `action` on run `id` in `root`, with `store_url` (the store in force)
/// passed through the environment, not the command line, where other users could read it.
pub(crate) fn run(action: Action, id: &str, root: &Path, store_url: Option<&str>) -> ControlJson {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return ControlJson {
                ok: false,
                message: format!("cannot find the dloop binary: {e}"),
            };
        }
    };
    let mut command = Command::new(exe);
    match action {
        Action::Stop => command.args(["stop", id]),
        Action::Resume => command.args(["resume", id, "--background"]),
    };
    command
        .current_dir(root)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    if let Some(url) = store_url {
        command.env("DLOOP_STORE", url);
    }
    match command.output() {
        Ok(out) => {
            let text = if out.stderr.is_empty() {
                &out.stdout
            } else {
                &out.stderr
            };
            let message = String::from_utf8_lossy(text).trim().to_owned();
            ControlJson {
                ok: out.status.success(),
                message,
            }
        }
        Err(e) => ControlJson {
            ok: false,
            message: format!("cannot run dloop: {e}"),
        },
    }
}
