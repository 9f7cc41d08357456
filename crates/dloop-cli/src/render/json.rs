//! The `--json` wire types: documented field by field, `snake_case`, built from reports and
//! never from internal structs. Adding a field is fine; renaming or removing one is a breaking
//! change. The README shows each shape.

use serde::Serialize;

use dloop_core::model::{LoopDef, Terminal};

/// One problem of `dloop validate --json` (the output is an array of these, empty when clean).
#[derive(Debug, Serialize)]
pub(crate) struct ProblemJson {
    /// The loop file, as given or relative to the working directory.
    pub(crate) file: String,
    /// Line, from 1; `null` when the problem has no place (an unreadable file).
    pub(crate) line: Option<u32>,
    /// Column, from 1, in characters; `null` with `line`.
    pub(crate) column: Option<u32>,
    /// What is wrong.
    pub(crate) message: String,
    /// What to do about it; `null` when there is nothing to add.
    pub(crate) help: Option<String>,
}

/// One loop of `dloop list --json` (the output is an array, sorted by name).
#[derive(Debug, Serialize)]
pub(crate) struct LoopJson {
    /// The loop's name: its file name without `.yaml`/`.yml`; what `dloop run NAME` takes.
    pub(crate) name: String,
    /// The loop file.
    pub(crate) file: String,
    /// The loop's `description`, or `null`.
    pub(crate) description: Option<String>,
    /// The number of states, or `null` when the file could not be read as a loop.
    pub(crate) states: Option<usize>,
    /// Whether `dloop validate` accepts the loop.
    pub(crate) valid: bool,
    /// The number of problems `dloop validate` reports.
    pub(crate) problems: usize,
    /// The first problem's message, or `null` when valid.
    pub(crate) error: Option<String>,
}

/// `dloop show LOOP --format json`.
#[derive(Debug, Serialize)]
pub(crate) struct ShowJson<'a> {
    /// The loop's name (its file stem).
    pub(crate) name: &'a str,
    /// The loop file.
    pub(crate) file: &'a str,
    /// The loop exactly as the file defines it (the shape `dloop schema` describes).
    pub(crate) definition: &'a LoopDef,
    /// Every state in file order, with defaults resolved.
    pub(crate) states: Vec<StateJson>,
}

/// One state in [`ShowJson`].
#[derive(Debug, Serialize)]
pub(crate) struct StateJson {
    /// The state's name.
    pub(crate) name: String,
    /// Whether the run starts here.
    pub(crate) initial: bool,
    /// `success` or `failure` for a terminal state, else `null`.
    pub(crate) terminal: Option<Terminal>,
    /// `shell`, `prompt`, `loop`, or `null` for a routing-only state.
    pub(crate) action: Option<&'static str>,
    /// The first line of the command, prompt or sub-loop name, truncated; `null` without action.
    pub(crate) summary: Option<String>,
    /// The evaluator in force (written or default): `exit_code`, `llm`, ..., or `always`
    /// for a state with no action.
    pub(crate) evaluator: &'static str,
    /// Resolved routes, one per verdict the evaluator can produce (for `classify`, per
    /// written key); `target` is `null` when the verdict has no route (for `error`: the run fails).
    pub(crate) routes: Vec<RouteJson>,
}

/// One resolved route in [`StateJson`].
#[derive(Debug, Serialize)]
pub(crate) struct RouteJson {
    /// The verdict (`success`, `failure`, ...; `_` stands for any other verdict), or
    /// `retries exhausted`.
    pub(crate) verdict: String,
    /// The next state, or `null` when none.
    pub(crate) target: Option<String>,
}

/// Serializes `value` as pretty JSON with a final newline.
pub(crate) fn to_pretty<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("wire types always serialize");
    text.push('\n');
    text
}
