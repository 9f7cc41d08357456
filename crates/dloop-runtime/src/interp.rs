//! Values for `${...}` references, looked up in a run's state: context, captures, the
//! previous step, the current state, the run itself, and the environment.
//!
//! Values are bytes ([`Lookup::value_bytes`]): shell actions get them byte-exact (non-UTF-8
//! output included, see `dloop_core::interpolate::shell`); prompts get them as text, with
//! invalid UTF-8 replaced.
//!
//! A captured output is read in one place, [`Lookup::output_bytes`]: from the run's output
//! stream, byte-exact (a small one is checked against its SHA-256 and falls back to the log's
//! UTF-8 excerpt if the stream lost it); of a large one the last `capture_limit` bytes are kept
//! (test runners and agents put their conclusions at the end).

use std::path::Path;

use dloop_core::RunState;
use dloop_core::interpolate::{self, Namespace, Quoting, RenderError, VarRef};
use dloop_core::state::StepResult;

/// The default most bytes of an output a capture keeps (1 MiB).
pub const DEFAULT_CAPTURE_LIMIT: u64 = 1024 * 1024;

/// Looks up references for one run at one moment.
pub struct Lookup<'a> {
    /// The run's state.
    pub state: &'a RunState,
    /// The run folder (`${run.dir}` is its `work/`).
    pub run_dir: &'a Path,
    /// The most bytes of an output a capture keeps.
    pub capture_limit: u64,
    /// The run, to read its output stream (`None`: outputs come from the log alone).
    pub outputs: Option<&'a dyn dloop_store::RunHandle>,
}

impl Lookup<'_> {
    /// The value of `var` as text (invalid UTF-8 replaced), or `None` when there is none.
    pub fn value(&self, var: &VarRef) -> Option<String> {
        self.value_bytes(var)
            .map(|bytes| String::from_utf8(bytes).unwrap_or_else(|e| lossy(e.as_bytes())))
    }

    /// The value of `var` as bytes, or `None` when there is none.
    pub fn value_bytes(&self, var: &VarRef) -> Option<Vec<u8>> {
        match (&var.namespace, var.path.as_slice()) {
            (Namespace::Captured, [name, field]) if field == "output" => self
                .state
                .captures
                .get(name.as_str())
                .map(|r| self.output_bytes(r)),
            (Namespace::Prev, [field]) if field == "output" => {
                self.state.prev.as_ref().map(|r| self.output_bytes(r))
            }
            (Namespace::Env, [name]) => {
                use std::os::unix::ffi::OsStringExt;
                std::env::var_os(name).map(OsStringExt::into_vec)
            }
            _ => self.text_value(var).map(String::into_bytes),
        }
    }

    /// The values that are text by nature (all but outputs and the environment).
    fn text_value(&self, var: &VarRef) -> Option<String> {
        let path: Vec<&str> = var.path.iter().map(String::as_str).collect();
        let state = self.state;
        match (&var.namespace, path.as_slice()) {
            (Namespace::Context, [key]) => state.context.get(*key).cloned(),
            (Namespace::Captured, [name, field]) => state
                .captures
                .get(*name)
                .and_then(|r| self.result_field(r, field)),
            (Namespace::Prev, [field]) => match *field {
                "state" => state.prev.as_ref().map(|r| r.state.clone()),
                _ => state
                    .prev
                    .as_ref()
                    .and_then(|r| self.result_field(r, field)),
            },
            (Namespace::State, ["name"]) => state.current.clone(),
            (Namespace::State, ["visit"]) => state
                .current
                .as_deref()
                .map(|s| state.visits(s).to_string()),
            (Namespace::Run, ["id"]) => Some(state.run_id.clone()),
            (Namespace::Run, ["iteration"]) => Some(state.step.to_string()),
            (Namespace::Run, ["dir"]) => {
                Some(crate::driver::work_dir(self.run_dir).display().to_string())
            }
            (Namespace::Run, ["elapsed_ms"]) => Some(state.elapsed_ms().to_string()),
            (Namespace::Run, ["loop"]) => Some(state.loop_name.clone()),
            _ => None,
        }
    }

    fn result_field(&self, result: &StepResult, field: &str) -> Option<String> {
        match field {
            "output" => Some(lossy(&self.output_bytes(result))),
            "stderr" => Some(result.result.stderr.clone()),
            "exit_code" => result.result.exit_code.map(|c| c.to_string()),
            "verdict" => result.verdict.clone(),
            "duration_ms" => Some(result.result.duration_ms.to_string()),
            _ => None,
        }
    }

    /// The action's output as bytes: the one place outputs are read back for interpolation.
    ///
    /// A small output is whole in the log, but as UTF-8 text (lossy); its exact bytes are read
    /// from the stream when they are there and match the recorded SHA-256 (after a power loss
    /// the unsynced stream may have lost them). A large output was synced in the stream before
    /// its record, so its tail is read from there.
    pub fn output_bytes(&self, result: &StepResult) -> Vec<u8> {
        let r = &result.result;
        let excerpt = || r.excerpt.clone().into_bytes();
        if r.output_path.is_empty() {
            return excerpt();
        }
        match (r.output_offset, self.outputs) {
            (Some(offset), Some(run)) if r.complete => {
                match run.read_output(offset, Some(offset + r.bytes)) {
                    Ok((bytes, _)) if crate::actions::output::sha256_hex(&bytes) == r.sha256 => {
                        bytes
                    }
                    _ => excerpt(),
                }
            }
            (Some(offset), Some(run)) => {
                let keep = r.bytes.min(self.capture_limit);
                let from = offset + (r.bytes - keep);
                match run.read_output(from, Some(offset + r.bytes)) {
                    Ok((bytes, _)) if bytes.len() as u64 == keep => bytes,
                    _ => excerpt(),
                }
            }
            (Some(_), None) => excerpt(),
            (None, _) if r.complete => excerpt(),
            // A log from before the output stream: a file of its own in the run folder.
            (None, _) => legacy_tail(&self.run_dir.join(&r.output_path), self.capture_limit)
                .unwrap_or_else(|_| excerpt()),
        }
    }

    /// The action's output as text ([`Lookup::output_bytes`], invalid UTF-8 replaced), for
    /// evaluators.
    pub fn output(&self, result: &StepResult) -> String {
        lossy(&self.output_bytes(result))
    }

    /// Renders shell action `text` as a bash script with this lookup (see
    /// `dloop_core::interpolate::shell`): values are bytes and reach the command as variables.
    ///
    /// # Errors
    /// A reference with no value, no default and no `?`, or one in a context validation refuses.
    pub fn render_shell(&self, text: &str) -> Result<Vec<u8>, RenderError> {
        let template = interpolate::parse_template(text);
        interpolate::render_shell(&template, &mut |var| self.value_bytes(var))
    }

    /// Renders `text` with this lookup; for shell actions prefer [`Lookup::render_shell`],
    /// which keeps values as bytes.
    ///
    /// # Errors
    /// A reference with no value, no default and no `?`.
    pub fn render(&self, text: &str, quoting: Quoting) -> Result<String, RenderError> {
        let template = interpolate::parse_template(text);
        interpolate::render(&template, quoting, &mut |var| self.value(var))
    }
}

/// The last `limit` bytes of an old run's output file, opened without following a link.
fn legacy_tail(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let len = file.metadata()?.len();
    if len > limit {
        file.seek(SeekFrom::Start(len - limit))?;
    }
    let mut bytes = Vec::with_capacity(len.min(limit) as usize);
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
