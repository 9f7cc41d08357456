//! `shell:` actions: the rendered command runs as `bash -c COMMAND` in its own process group.
//!
//! Linux refuses a single argument over 128 KiB (E2BIG), and a command holding a large capture
//! is that big: such a command (or one that is not UTF-8) runs from a script file in the run's scratch folder instead,
//! named by step number (never by state name), created 0600 without following a symlink, and
//! removed when the action ends.

use std::io;
use std::path::PathBuf;

use super::{ActionIo, ActionOutcome, ActionRequest, ActionRunner};
use crate::process::{self, ProcessSpec};

/// The longest rendered command passed as `bash -c COMMAND`; longer ones run from a file.
pub const MAX_INLINE_SCRIPT: usize = 100 * 1024;

/// Runs shell actions with `bash`.
#[derive(Debug, Clone)]
pub struct ShellRunner {
    /// `bash`, resolved on PATH once: spawning by bare name makes every step try each PATH
    /// entry with execve.
    bash: String,
}

impl Default for ShellRunner {
    fn default() -> Self {
        Self {
            bash: find_on_path("bash").unwrap_or_else(|| "bash".to_owned()),
        }
    }
}

impl ActionRunner for ShellRunner {
    fn run(
        &self,
        request: &ActionRequest<'_>,
        io: &mut ActionIo<'_, '_>,
    ) -> io::Result<ActionOutcome> {
        let mut script_file = None;
        // A script that is not UTF-8 (only a `:raw` value can make it so) also runs from a
        // file, so its bytes reach bash unchanged.
        let inline = std::str::from_utf8(request.text)
            .ok()
            .filter(|text| text.len() <= MAX_INLINE_SCRIPT);
        let argv = if let Some(text) = inline {
            vec![self.bash.clone(), "-c".to_owned(), text.to_owned()]
        } else {
            let path = request
                .scratch
                .join(format!("step-{}.sh", request.pending.step));
            super::write_scratch_file(&path, request.text)?;
            let argv = vec![self.bash.clone(), path.display().to_string()];
            script_file = Some(path);
            argv
        };
        let spec = ProcessSpec {
            argv,
            env: request.env.to_vec(),
            cwd: request.cwd.to_owned(),
            stdin: None,
            idempotency_key: request.pending.idempotency_key.clone(),
            limits: request.limits.clone(),
        };
        let stop = io.stop;
        let end = process::run_process(&spec, stop, &mut |stream, bytes| io.chunk(stream, bytes));
        if let Some(path) = script_file {
            let _ = std::fs::remove_file(path);
        }
        Ok(end?.into())
    }
}

/// The first executable `name` on `PATH`, as an absolute path.
fn find_on_path(name: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate.is_absolute()
                && std::fs::metadata(candidate)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|found: PathBuf| found.display().to_string())
}
