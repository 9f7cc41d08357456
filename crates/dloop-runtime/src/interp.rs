//! Values for `${...}` references, looked up in a run's state: context, captures, the
//! previous step, the current state, the run itself, and the environment.
//!
//! A captured output that fits the log's excerpt is read from the log (the state); a larger one
//! is read back from its output file, keeping its last `capture_limit` bytes (test runners and
//! agents put their conclusions at the end).

use std::io::{Read, Seek, SeekFrom};
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
}

impl Lookup<'_> {
    /// The value of `var`, or `None` when there is none.
    pub fn value(&self, var: &VarRef) -> Option<String> {
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
            (Namespace::Env, [name]) => std::env::var(name).ok(),
            _ => None,
        }
    }

    fn result_field(&self, result: &StepResult, field: &str) -> Option<String> {
        match field {
            "output" => Some(self.output(result)),
            "stderr" => Some(result.result.stderr.clone()),
            "exit_code" => result.result.exit_code.map(|c| c.to_string()),
            "verdict" => result.verdict.clone(),
            "duration_ms" => Some(result.result.duration_ms.to_string()),
            _ => None,
        }
    }

    /// The action's output, whole when the log has it, else the tail of its file.
    pub fn output(&self, result: &StepResult) -> String {
        if result.result.complete {
            return result.result.excerpt.clone();
        }
        read_tail(
            &self.run_dir.join(&result.result.output_path),
            self.capture_limit,
        )
        .unwrap_or_else(|_| result.result.excerpt.clone())
    }

    /// Renders `text` with this lookup.
    ///
    /// # Errors
    /// A reference with no value, no default and no `?`.
    pub fn render(&self, text: &str, quoting: Quoting) -> Result<String, RenderError> {
        let template = interpolate::parse_template(text);
        interpolate::render(&template, quoting, &mut |var| self.value(var))
    }
}

fn read_tail(path: &Path, limit: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > limit {
        file.seek(SeekFrom::Start(len - limit))?;
    }
    let mut bytes = Vec::with_capacity(len.min(limit) as usize);
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
