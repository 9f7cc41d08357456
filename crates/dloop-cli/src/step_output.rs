//! Finding and reading a step's output: where each action's bytes are in the run's output
//! stream, from the log's records alone, for `dloop output` and `dloop logs --output`.
//!
//! An action's output starts at the offset its `action_started` record names. Its end is known
//! once `action_finished` (offset and bytes) or `action_interrupted` (bytes) is written; until
//! then (the action runs, or its runner died without a record) it runs to the next action's start
//! or to the end of the stream. Logs from before the stream name a file per output instead
//! (only for outputs over the excerpt); shorter ones are whole in the log.
//!
//! Every read opens the stream without following a symlink, and a range beyond the stream's end
//! (lost to a power loss) reads as what is there, never as another file's bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use dloop_core::Record;
use dloop_core::event::Event;
use serde::Serialize;

/// How far a step's output got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OutputState {
    /// The action has not ended (or its runner died without saying so).
    Open,
    /// The action finished.
    Finished,
    /// A stop or timeout ended it; what it printed until then is kept.
    Interrupted,
}

/// One action's output.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StepOutput {
    /// The state that ran it.
    pub(crate) state: String,
    /// The step number.
    pub(crate) step: u64,
    /// How far it got.
    pub(crate) status: OutputState,
    /// Where it is, relative to the run folder.
    pub(crate) path: String,
    /// Where it starts in the stream (`None`: a whole file of its own, or nothing at all).
    pub(crate) offset: Option<u64>,
    /// Its length, once known.
    pub(crate) bytes: Option<u64>,
    /// The whole output, when the log holds it and there is no stream to read (old logs).
    #[serde(skip)]
    pub(crate) in_log: Option<String>,
    /// The runner profile of an agent step (its output is the CLI's JSON stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) profile: Option<String>,
}

impl StepOutput {
    /// The end offset in the stream, when known.
    pub(crate) fn end(&self) -> Option<u64> {
        Some(self.offset? + self.bytes?)
    }
}

/// Collects the outputs of a run's actions from its records, in log order.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    /// Every action's output, oldest first.
    pub(crate) steps: Vec<StepOutput>,
}

impl Outputs {
    /// Takes one record.
    pub(crate) fn feed(&mut self, record: &Record) {
        match &record.event {
            Event::ActionStarted {
                state,
                step,
                output_path,
                output_offset,
                profile,
                ..
            } => {
                // An open output before this one was cut off by a dead runner: it ends here.
                if let Some(last) = self.steps.last_mut()
                    && last.status == OutputState::Open
                    && let (Some(start), Some(next)) = (last.offset, *output_offset)
                {
                    last.bytes = Some(next.saturating_sub(start));
                    last.status = OutputState::Interrupted;
                }
                self.steps.push(StepOutput {
                    state: state.clone(),
                    step: *step,
                    status: OutputState::Open,
                    path: output_path.clone(),
                    offset: *output_offset,
                    bytes: None,
                    in_log: None,
                    profile: profile.clone(),
                });
            }
            Event::ActionFinished {
                state,
                step,
                result,
                ..
            } => {
                let entry = self.open_entry(state, *step);
                entry.status = OutputState::Finished;
                entry.bytes = Some(result.bytes);
                if result.output_offset.is_some() {
                    entry.offset = result.output_offset;
                    entry.path = result.output_path.clone();
                } else if !result.output_path.is_empty() {
                    // An old log: a file of its own.
                    entry.offset = None;
                    entry.path = result.output_path.clone();
                } else {
                    entry.offset = None;
                    entry.path.clear();
                    entry.in_log = Some(result.excerpt.clone());
                }
            }
            Event::ActionInterrupted {
                state, step, bytes, ..
            } => {
                let entry = self.open_entry(state, *step);
                entry.status = OutputState::Interrupted;
                entry.bytes = entry.bytes.or(*bytes);
            }
            _ => {}
        }
    }

    /// The open entry of `state`/`step`, or a new one (a finish with no start in view).
    fn open_entry(&mut self, state: &str, step: u64) -> &mut StepOutput {
        let found = self
            .steps
            .iter()
            .rposition(|s| s.step == step && s.state == state && s.status == OutputState::Open);
        match found {
            Some(index) => &mut self.steps[index],
            None => {
                self.steps.push(StepOutput {
                    state: state.to_owned(),
                    step,
                    status: OutputState::Open,
                    path: String::new(),
                    offset: None,
                    bytes: None,
                    in_log: None,
                    profile: None,
                });
                self.steps.last_mut().expect("just pushed")
            }
        }
    }

    /// The latest output of `which`: a step number, or a state name (its latest step); the
    /// latest output of all when `None`.
    pub(crate) fn find(&self, which: Option<&str>) -> Option<&StepOutput> {
        match which {
            None => self.steps.last(),
            Some(text) => match text.parse::<u64>() {
                Ok(step) => self.steps.iter().rev().find(|s| s.step == step),
                Err(_) => self.steps.iter().rev().find(|s| s.state == text),
            },
        }
    }
}

/// Reads `[from, to)` of the file at `path` (to the end when `to` is `None`), without following
/// a symlink; returns the bytes and the offset read up to.
pub(crate) fn read_span(
    path: &Path,
    from: u64,
    to: Option<u64>,
) -> std::io::Result<(Vec<u8>, u64)> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let len = file.metadata()?.len();
    let end = to.map_or(len, |t| t.min(len));
    if end <= from {
        return Ok((Vec::new(), from.max(end)));
    }
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::with_capacity((end - from) as usize);
    file.take(end - from).read_to_end(&mut bytes)?;
    Ok((bytes, end))
}

/// The file an output is in, inside the run folder `run_dir`. Record paths are relative, and
/// one with `..` or an absolute path (a tampered log) is refused.
pub(crate) fn file_of(run_dir: &Path, output: &StepOutput) -> Option<PathBuf> {
    let rel = Path::new(&output.path);
    let inside = !output.path.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    inside.then(|| run_dir.join(rel))
}

/// Makes output safe to show on a terminal: control bytes other than newline and tab (escape
/// sequences that could move the cursor, retitle the window or hide text) are shown as `^X` /
/// `\xNN`; everything else passes as it is.
pub(crate) fn for_terminal(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\n' | b'\t' => out.push(b),
            0x00..=0x1f => {
                out.push(b'^');
                out.push(b + 0x40);
            }
            0x7f => out.extend_from_slice(b"^?"),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dloop_core::Timestamp;
    use dloop_core::event::{ActionKind, ActionResult};

    fn record(seq: u64, event: Event) -> Record {
        Record {
            seq,
            ts: Timestamp::from_millis(0),
            event,
        }
    }

    fn started(step: u64, offset: u64) -> Event {
        Event::ActionStarted {
            state: "a".into(),
            step,
            kind: ActionKind::Shell,
            idempotency_key: format!("k{step}"),
            output_path: "output.log".into(),
            output_offset: Some(offset),
            profile: None,
            prompt: None,
            continues_session: None,
        }
    }

    #[test]
    fn spans_come_from_starts_finishes_and_the_next_start() {
        let mut outputs = Outputs::default();
        outputs.feed(&record(1, started(1, 0)));
        outputs.feed(&record(
            2,
            Event::ActionFinished {
                state: "a".into(),
                step: 1,
                capture: None,
                result: ActionResult {
                    bytes: 5,
                    output_path: "output.log".into(),
                    output_offset: Some(0),
                    ..ActionResult::default()
                },
            },
        ));
        // Step 2's runner died; step 3 (a resume's re-run) starts after what it printed.
        outputs.feed(&record(3, started(2, 5)));
        outputs.feed(&record(4, started(3, 12)));
        let spans: Vec<_> = outputs
            .steps
            .iter()
            .map(|s| (s.step, s.status, s.offset, s.bytes))
            .collect();
        assert_eq!(
            spans,
            vec![
                (1, OutputState::Finished, Some(0), Some(5)),
                (2, OutputState::Interrupted, Some(5), Some(7)),
                (3, OutputState::Open, Some(12), None),
            ]
        );
        assert_eq!(outputs.find(Some("2")).map(|s| s.step), Some(2));
        assert_eq!(outputs.find(Some("a")).map(|s| s.step), Some(3));
        assert_eq!(outputs.find(None).map(|s| s.step), Some(3));
    }

    #[test]
    fn a_tampered_path_never_leaves_the_run_folder() {
        let mut output = StepOutput {
            state: "a".into(),
            step: 1,
            status: OutputState::Finished,
            path: "../../etc/passwd".into(),
            offset: Some(0),
            bytes: Some(1),
            in_log: None,
            profile: None,
        };
        assert_eq!(file_of(Path::new("/r"), &output), None);
        output.path = "/etc/passwd".into();
        assert_eq!(file_of(Path::new("/r"), &output), None);
        output.path = "output.log".into();
        assert_eq!(
            file_of(Path::new("/r"), &output),
            Some(PathBuf::from("/r/output.log"))
        );
    }

    #[test]
    fn control_bytes_cannot_drive_the_terminal() {
        assert_eq!(
            for_terminal(b"a\x1b[2Jb\n\tc\x7f"),
            b"a^[[2Jb\n\tc^?".to_vec()
        );
    }
}
