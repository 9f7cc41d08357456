//! The web view's JSON: what each API route answers, built only from the [`Store`].
//!
//! - `/api/runs`: [`RunRowJson`] rows (the `watch` list's columns plus how to group them).
//! - `/api/runs/ID`: the `dloop inspect --json` shape ([`RunJson`], README "JSON shapes").
//! - `/api/runs/ID/steps`: the timeline ([`super::steps::StepJson`]).
//! - `/api/runs/ID/graph`: the run's own loop (the copy it started with) as `dloop show
//!   --format json`'s `states`, for the diagram.
//! - `/api/runs/ID/output/STEP?offset=N&limit=M[&view=raw|transcript]`: a bounded slice of
//!   one step's output; an agent step's is its readable transcript unless `view=raw` (offsets
//!   then count bytes of the transcript, which only grows while the step runs).

use dloop_core::Timestamp;
use dloop_core::config::Base;
use dloop_runtime::actions::AgentActivity;
use dloop_runtime::actions::agents::StreamReader;
use dloop_store::Store;
use serde::Serialize;

use super::steps::Timeline;
use crate::error::CliError;
use crate::render::json::StateJson;
use crate::runs::{RunInfo, store_error};
use crate::step_output::{OutputState, StepOutput};

/// The default and the largest slice of output one request returns.
pub(crate) const OUTPUT_LIMIT: u64 = 64 * 1024;
/// The largest `limit` a request may ask for.
pub(crate) const OUTPUT_LIMIT_MAX: u64 = 1024 * 1024;
/// The most bytes of an agent's stream read to make its transcript.
const TRANSCRIPT_MAX: u64 = 16 * 1024 * 1024;

/// One row of the runs list (wire type of `/api/runs` and the `run` event).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RunRowJson {
    /// The run id.
    pub(crate) id: String,
    /// Its loop.
    #[serde(rename = "loop")]
    pub(crate) loop_name: String,
    /// One of README's statuses (`running`, `paused`, `crashed`, ...), as `status --json`.
    pub(crate) status: &'static str,
    /// The status as `dloop status` shows it (`waiting (scope src/)`, ...).
    pub(crate) label: String,
    /// `live`, `waiting`, `paused` (resumable: paused, crashed, timed out) or `finished`.
    pub(crate) group: &'static str,
    /// Why it is paused or failed.
    pub(crate) reason: Option<String>,
    /// Its current (or last) state.
    pub(crate) state: Option<String>,
    /// Steps so far.
    pub(crate) step: u64,
    /// When it started (RFC 3339, UTC).
    pub(crate) started_at: String,
    /// Run time when this row was made (a live run's clock runs on from there).
    pub(crate) elapsed_ms: u64,
    /// Whether a process drives it now.
    pub(crate) live: bool,
    /// Whether `dloop resume` can continue it now.
    pub(crate) resumable: bool,
    /// Agent cost so far, USD (0 without agent steps).
    pub(crate) cost_usd: f64,
    /// Agent input tokens (not cached).
    pub(crate) tokens_in: u64,
    /// Agent output tokens.
    pub(crate) tokens_out: u64,
}

impl RunRowJson {
    /// The row of `info` at `now`.
    pub(crate) fn from_info(info: &RunInfo, now: Timestamp) -> RunRowJson {
        let run = crate::render::run_json::RunJson::from_info(info);
        let waiting = info.scope_wait().is_some()
            || (info.live && info.rate_limit_wait().is_some())
            || run.status == "queued";
        let group = if waiting {
            "waiting"
        } else if info.live {
            "live"
        } else if info.state.status.is_finished() {
            "finished"
        } else {
            "paused"
        };
        RunRowJson {
            id: run.id,
            loop_name: run.loop_name,
            status: run.status,
            label: info.status_label(),
            group,
            reason: run.reason,
            state: run.state,
            step: run.step,
            started_at: run.started_at,
            elapsed_ms: crate::render::run_view::elapsed_ms(info, now),
            live: info.live,
            resumable: info.is_resumable(),
            cost_usd: info.state.agent.cost_usd,
            tokens_in: info.state.agent.tokens.input,
            tokens_out: info.state.agent.tokens.output,
        }
    }
}

/// `/api/runs/ID/graph`.
#[derive(Debug, Serialize)]
pub(crate) struct GraphJson {
    /// The loop's name.
    pub(crate) name: String,
    /// The state runs start in.
    pub(crate) initial: Option<String>,
    /// Every state with its resolved routes (`dloop show --format json`'s `states`).
    pub(crate) states: Vec<StateJson>,
}

/// The loop graph of run `id`, from the definition it started with.
pub(crate) fn graph(store: &dyn Store, id: &str) -> Result<GraphJson, CliError> {
    let meta = store.read_meta(id).map_err(|e| store_error(e, id))?;
    let parsed = dloop_core::parse::parse_loop(meta.definition.as_bytes()).map_err(|_| {
        CliError::new(
            crate::error::ErrorKind::Corrupt,
            format!("run {id}'s copy of its loop does not parse"),
        )
    })?;
    Ok(GraphJson {
        name: meta.loop_name,
        initial: parsed.def.initial.clone(),
        states: crate::commands::show::states(&parsed.def),
    })
}

/// The steps `/api/runs/ID/steps` and the feed's `timeline` send by default: the newest.
pub(crate) const STEPS_WINDOW: u64 = 500;
/// The most steps one request may ask for.
pub(crate) const STEPS_WINDOW_MAX: u64 = 5_000;

/// `/api/runs/ID/steps`.
#[derive(Debug, Serialize)]
pub(crate) struct StepsJson {
    /// The seq of the last record read.
    pub(crate) last_seq: u64,
    /// How many steps came before the first one here (ask with `before=` this).
    pub(crate) earlier: u64,
    /// The steps, oldest first: the newest of the run (or of those before `before`).
    pub(crate) steps: Vec<super::steps::StepJson>,
    /// Every state the run entered (for the diagram; whatever the window).
    pub(crate) visited: Vec<String>,
    /// Every move between states, `[from, to]`.
    pub(crate) taken: Vec<(String, String)>,
}

impl StepsJson {
    /// The wire form of `timeline`.
    pub(crate) fn from_timeline(timeline: Timeline) -> StepsJson {
        StepsJson {
            last_seq: timeline.last_seq,
            earlier: timeline.earlier,
            steps: timeline.steps,
            visited: timeline.visited.into_iter().collect(),
            taken: timeline.taken.into_iter().collect(),
        }
    }
}

/// Which steps of a timeline to keep.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Only steps with an index below this (`None`: up to the newest).
    pub(crate) before: Option<u64>,
    /// The most steps kept (the newest of them).
    pub(crate) limit: u64,
}

impl Window {
    /// The newest `limit` steps.
    pub(crate) fn newest(limit: u64) -> Window {
        Window {
            before: None,
            limit,
        }
    }
}

/// The timeline of run `id`, read in one pass in constant memory: the window's steps and the
/// whole path.
pub(crate) fn timeline(store: &dyn Store, id: &str, window: Window) -> Result<Timeline, CliError> {
    let keep = usize::try_from(window.limit).unwrap_or(usize::MAX);
    let mut timeline = Timeline::newest(keep);
    for record in store.records_from(id, 1).map_err(|e| store_error(e, id))? {
        timeline.feed(&record.map_err(|e| store_error(e, id))?);
        if let Some(before) = window.before
            && timeline.total() > before
        {
            // The first step past the window: the ones before it are complete.
            timeline.steps.pop();
            break;
        }
    }
    timeline.finish();
    Ok(timeline)
}

/// `/api/runs/ID/output/STEP`: a slice of one step's output.
#[derive(Debug, Serialize)]
pub(crate) struct OutputJson {
    /// The step.
    pub(crate) step: u64,
    /// Its state.
    pub(crate) state: String,
    /// `open` (still running), `finished` or `interrupted`.
    pub(crate) status: OutputState,
    /// Where this slice starts, in bytes from the step's first byte.
    pub(crate) offset: u64,
    /// Where the next slice starts (ask with `offset=` this).
    pub(crate) next_offset: u64,
    /// The step's whole size, once known.
    pub(crate) bytes: Option<u64>,
    /// Whether this slice reaches the end of a step that ended (nothing more will come).
    pub(crate) complete: bool,
    /// The runner profile of an agent step (its output is the CLI's JSON stream).
    pub(crate) profile: Option<String>,
    /// `raw` (the bytes as printed) or `transcript` (an agent step's stream made readable).
    pub(crate) view: &'static str,
    /// The slice as text (invalid UTF-8 replaced; a character cut by the slice's end is left
    /// for the next one).
    pub(crate) text: String,
}

/// Why an output cannot be served.
#[derive(Debug)]
pub(crate) enum OutputError {
    /// The run has no output of that step.
    NoSuchStep,
    /// The store failed.
    Store(CliError),
}

/// What `/api/runs/ID/output/STEP` asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputQuery {
    /// The step number.
    pub(crate) step: u64,
    /// Where to start, in bytes of the step's output (or transcript).
    pub(crate) offset: u64,
    /// The most bytes to return.
    pub(crate) limit: u64,
    /// The raw bytes even for an agent step.
    pub(crate) raw: bool,
}

/// Finds where step `step` of run `id` lies (its latest output; `None`: no such step).
pub(crate) type Locate<'a> = dyn Fn(&str, u64) -> Result<Option<StepOutput>, CliError> + 'a;

/// Reads a slice of a step's output of run `id`; `locate` finds where the step's output lies
/// (the output index), `agent_base` names the CLI of a runner profile, to read an agent step's
/// stream as its transcript.
pub(crate) fn output(
    store: &dyn Store,
    id: &str,
    query: OutputQuery,
    locate: &Locate<'_>,
    agent_base: &dyn Fn(&str) -> Option<Base>,
) -> Result<OutputJson, OutputError> {
    let OutputQuery {
        step,
        offset,
        limit,
        raw,
    } = query;
    let found = locate(id, step)
        .map_err(OutputError::Store)?
        .ok_or(OutputError::NoSuchStep)?;
    let found = &found;
    let limit = limit.clamp(1, OUTPUT_LIMIT_MAX);
    let base = match (&found.profile, raw) {
        (Some(profile), false) => agent_base(profile),
        _ => None,
    };
    let mut out = OutputJson {
        step,
        state: found.state.clone(),
        status: found.status,
        offset,
        next_offset: offset,
        bytes: found.bytes,
        complete: false,
        profile: found.profile.clone(),
        view: if base.is_some() { "transcript" } else { "raw" },
        text: String::new(),
    };
    let bytes = match (&found.in_log, found.offset) {
        (None, Some(start)) if let Some(base) = base => {
            let all = transcript(store, id, found, start, base)?;
            out.bytes = (found.status != OutputState::Open).then_some(all.len() as u64);
            let from = (offset as usize).min(all.len());
            let to = from.saturating_add(limit as usize).min(all.len());
            all.as_bytes()[from..to].to_vec()
        }
        // A log from before the output stream that holds the whole (short) output.
        (Some(text), _) => {
            let all = text.as_bytes();
            let from = (offset as usize).min(all.len());
            let to = from.saturating_add(limit as usize).min(all.len());
            out.bytes = Some(all.len() as u64);
            all[from..to].to_vec()
        }
        (None, Some(start)) => {
            let from = start.saturating_add(offset);
            let mut to = from.saturating_add(limit);
            if let Some(end) = found.end() {
                to = to.min(end.max(from));
            }
            let (bytes, _) = store
                .read_output(id, from, Some(to))
                .map_err(|e| OutputError::Store(store_error(e, id)))?;
            bytes
        }
        // Nothing printed, or an old log's file of its own (`dloop output` reads those).
        (None, None) => Vec::new(),
    };
    let (text, used) = utf8_prefix(&bytes);
    out.text = text;
    out.next_offset = offset + used as u64;
    out.complete =
        found.status != OutputState::Open && out.bytes.is_none_or(|total| out.next_offset >= total);
    Ok(out)
}

/// The readable transcript of an agent step's stream (what `dloop output` prints for it): what
/// the agent wrote, each tool call, errors, the end. Lines still being written are left for a
/// later read, so the text only grows while the step runs.
fn transcript(
    store: &dyn Store,
    id: &str,
    found: &StepOutput,
    start: u64,
    base: Base,
) -> Result<String, OutputError> {
    let end = found
        .end()
        .unwrap_or(u64::MAX)
        .min(start.saturating_add(TRANSCRIPT_MAX));
    let (bytes, _) = store
        .read_output(id, start, Some(end))
        .map_err(|e| OutputError::Store(store_error(e, id)))?;
    let mut lines = Vec::new();
    let mut collect = |activity: AgentActivity| {
        lines.extend(crate::render::agent_view::lines(
            &activity,
            true,
            usize::MAX,
            false,
        ));
    };
    let mut reader = StreamReader::new(base);
    reader.feed(&bytes, &mut collect);
    if found.status != OutputState::Open {
        reader.finish(&mut collect);
    }
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    Ok(text)
}

/// `bytes` as text, and how many bytes that used: a multi-byte character cut at the end is
/// left out (the next slice starts with it); invalid bytes elsewhere become U+FFFD.
fn utf8_prefix(bytes: &[u8]) -> (String, usize) {
    // The start of the last character: at most 3 continuation bytes back. (Asking
    // `from_utf8` would find the first error only: an invalid byte earlier in the slice hid a
    // character cut at its end, which then came out as two U+FFFD.)
    let start = (1..=bytes.len().min(4))
        .map(|back| bytes.len() - back)
        .find(|&i| bytes[i] & 0b1100_0000 != 0b1000_0000);
    let held = match start {
        Some(i) if i > 0 => match std::str::from_utf8(&bytes[i..]) {
            // Only an incomplete (not an invalid) character is held back.
            Err(e) if e.valid_up_to() == 0 && e.error_len().is_none() => bytes.len() - i,
            _ => 0,
        },
        _ => 0,
    };
    let used = bytes.len() - held;
    (String::from_utf8_lossy(&bytes[..used]).into_owned(), used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_by_the_slice_is_left_for_the_next() {
        assert_eq!(utf8_prefix(b"ab"), ("ab".to_owned(), 2));
        let e_acute = "é".as_bytes();
        assert_eq!(utf8_prefix(&[b'a', e_acute[0]]), ("a".to_owned(), 1));
        assert_eq!(utf8_prefix(&[0xff, b'a']), ("\u{fffd}a".to_owned(), 2));
        // An invalid byte earlier does not hide the cut character at the end.
        assert_eq!(
            utf8_prefix(&[0xff, b'a', e_acute[0]]),
            ("\u{fffd}a".to_owned(), 2)
        );
        let euro = "€".as_bytes();
        assert_eq!(
            utf8_prefix(&[0xfe, b'x', euro[0], euro[1]]),
            ("\u{fffd}x".to_owned(), 2)
        );
        // A slice that is only a cut character is served (no progress otherwise), and a
        // stray continuation byte at the end is invalid, not held.
        assert_eq!(utf8_prefix(&[e_acute[0]]), ("\u{fffd}".to_owned(), 1));
        assert_eq!(utf8_prefix(&[b'a', 0x80]), ("a\u{fffd}".to_owned(), 2));
        assert_eq!(utf8_prefix("aé".as_bytes()), ("aé".to_owned(), 3));
    }
}
