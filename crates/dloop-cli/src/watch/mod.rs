//! `dloop watch`'s model: the rows of the runs list and the selected run's detail (its
//! timeline and the live tail of its running step), kept current from the [`Store`] without
//! re-reading: the detail follows the log from the next sequence number and the output stream
//! from the last byte read. [`view`] draws it; `commands/watch.rs` drives the terminal.

pub(crate) mod view;

use dloop_core::Timestamp;
use dloop_core::config::Base;
use dloop_runtime::actions::agents::StreamReader;
use dloop_store::Store;

use crate::error::CliError;
use crate::runs::{RunInfo, load_all, store_error};
use crate::step_output::{OutputState, Outputs};

/// Finished runs the list keeps below the live and resumable ones.
const RECENT_FINISHED: usize = 10;
/// Lines of a step's output kept for the tail.
const TAIL_LINES: usize = 500;
/// Timeline lines kept: the screen shows the last few; a run of 100,000 records must not
/// keep them all.
const TIMELINE_LINES: usize = 1_000;
/// Step outputs kept: the tail needs the newest, and a finish may name one a little older.
const OUTPUTS_KEPT: usize = 16;
/// The most bytes of output read at once: a step that printed 100 MB is read in pieces,
/// never held whole.
const READ_CHUNK: u64 = 1024 * 1024;
/// The most bytes of one line kept: a line longer than any screen (a 100 MB line without a
/// newline) is cut, the rest of it dropped up to its newline.
const LINE_MAX: usize = 4 * 1024;

/// One row of the runs list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// The run id.
    pub(crate) id: String,
    /// Its loop.
    pub(crate) loop_name: String,
    /// `running`, `paused`, `waiting (scope ...)`, ...
    pub(crate) status: String,
    /// The current (or last) state.
    pub(crate) state: String,
    /// Steps taken.
    pub(crate) step: u64,
    /// Wall-clock time so far.
    pub(crate) elapsed_ms: u64,
    /// Agent cost in USD (0 without agent steps).
    pub(crate) cost_usd: f64,
    /// Whether a process drives it now (`s` stops it).
    pub(crate) live: bool,
    /// Whether `r` can resume it.
    pub(crate) resumable: bool,
    /// How deep it is drawn: 0 for a top-level run, 1 for a sub-loop run listed under its
    /// parent, and so on (as `dloop status` draws them).
    pub(crate) level: usize,
}

impl Row {
    fn from_info(info: &RunInfo, now: Timestamp) -> Row {
        let loop_name = if info.state.loop_name.is_empty() {
            dloop_core::run_id::RunId::parse(&info.id)
                .map(|id| id.loop_name().to_owned())
                .unwrap_or_default()
        } else {
            info.state.loop_name.clone()
        };
        Row {
            id: info.id.clone(),
            loop_name,
            status: info.status_label(),
            state: info.state.current.clone().unwrap_or_default(),
            step: info.state.step,
            elapsed_ms: crate::render::run_view::elapsed_ms(info, now),
            cost_usd: info.state.agent.cost_usd,
            live: info.live,
            resumable: info.is_resumable(),
            level: 0,
        }
    }
}

/// The selected run, followed from where the last refresh stopped reading.
#[derive(Default)]
pub(crate) struct Detail {
    /// The run id.
    pub(crate) id: String,
    /// The timeline, one line per record.
    pub(crate) timeline: Vec<String>,
    /// The next sequence number to read.
    next_seq: u64,
    /// Where each step's output is.
    outputs: Outputs,
    /// The step whose output the tail shows (state, step).
    tail_of: Option<(String, u64)>,
    /// The next byte of the output stream to read for the tail.
    tail_pos: u64,
    /// The tail's lines (an agent step's as its transcript).
    pub(crate) tail: Vec<String>,
    /// Whether the tail belongs to a step that still runs.
    pub(crate) tail_open: bool,
    /// The tailed step, as `state (step N)`.
    pub(crate) tail_title: String,
    /// Reads an agent step's JSON stream as its transcript.
    agent: Option<StreamReader>,
    /// A partial last line of a plain step's output (at most [`LINE_MAX`] bytes).
    partial: String,
    /// Whether the partial line was cut at [`LINE_MAX`] (its rest is dropped).
    partial_cut: bool,
}

/// Which screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Screen {
    /// The runs list.
    List,
    /// The selected run's timeline and output tail.
    Detail,
}

/// Everything the dashboard shows.
pub(crate) struct App {
    /// The runs, live and resumable first, newest first.
    pub(crate) rows: Vec<Row>,
    /// Index into `rows`.
    pub(crate) selected: usize,
    /// The screen.
    pub(crate) screen: Screen,
    /// The selected run, once the detail screen opened.
    pub(crate) detail: Option<Detail>,
    /// A one-line message (the last key's outcome).
    pub(crate) message: String,
}

impl App {
    /// An empty dashboard on the list screen.
    pub(crate) fn new() -> App {
        App {
            rows: Vec::new(),
            selected: 0,
            screen: Screen::List,
            detail: None,
            message: String::new(),
        }
    }

    /// The selected row.
    pub(crate) fn current(&self) -> Option<&Row> {
        self.rows.get(self.selected)
    }

    /// Moves the selection by `delta` rows (the detail follows on the next refresh).
    pub(crate) fn move_by(&mut self, delta: isize) {
        if self.rows.is_empty() {
            return;
        }
        let last = self.rows.len() as isize - 1;
        self.selected = (self.selected as isize + delta).clamp(0, last) as usize;
    }

    /// Sets the rows from the runs, keeping the selection on the same run.
    pub(crate) fn set_runs(&mut self, mut runs: Vec<RunInfo>, now: Timestamp) {
        crate::commands::status::sort_newest_first(&mut runs);
        let (active, finished): (Vec<_>, Vec<_>) = runs
            .into_iter()
            .partition(|r| !r.state.status.is_finished());
        let keep: Vec<RunInfo> = active
            .into_iter()
            .chain(finished.into_iter().take(RECENT_FINISHED))
            .collect();
        // Each sub-loop run right under its parent, one level deeper (as `status` lists them).
        let nested = crate::commands::status::nest_children(keep);
        let levels = crate::commands::status::nesting_levels(&nested);
        let rows = nested
            .iter()
            .zip(levels)
            .map(|(info, level)| Row {
                level,
                ..Row::from_info(info, now)
            })
            .collect();
        let selected_id = self.current().map(|r| r.id.clone());
        self.rows = rows;
        let found = selected_id
            .as_ref()
            .and_then(|id| self.rows.iter().position(|r| &r.id == id));
        self.selected = found.unwrap_or(self.selected.min(self.rows.len().saturating_sub(1)));
        // The open run went away (`dloop rm`, `gc`): back to the list, saying so, rather than
        // show the next run's detail in its place, where `s` or `r` would act on a run the
        // user did not choose.
        if let (Some(id), None) = (selected_id, found)
            && self.screen == Screen::Detail
        {
            self.screen = Screen::List;
            self.detail = None;
            self.message = format!("{id} was deleted");
        }
    }

    /// Reads the runs list and the selected run's news from `store`.
    pub(crate) fn refresh(
        &mut self,
        store: &dyn Store,
        agent_base: &dyn Fn(&str) -> Option<Base>,
        now: Timestamp,
    ) -> Result<(), CliError> {
        let all = load_all(store)?;
        self.set_runs(all.runs, now);
        if self.screen == Screen::Detail
            && let Some(id) = self.current().map(|r| r.id.clone())
        {
            if self.detail.as_ref().is_none_or(|d| d.id != id) {
                self.detail = Some(Detail {
                    id: id.clone(),
                    next_seq: 1,
                    ..Detail::default()
                });
            }
            if let Some(detail) = &mut self.detail {
                detail.update(store, agent_base)?;
            }
        }
        Ok(())
    }
}

impl Detail {
    /// Reads the records after the last one read, and the tailed step's new output bytes.
    fn update(
        &mut self,
        store: &dyn Store,
        agent_base: &dyn Fn(&str) -> Option<Base>,
    ) -> Result<(), CliError> {
        let id = self.id.clone();
        for record in store
            .records_from(&id, self.next_seq)
            .map_err(|e| store_error(e, &id))?
        {
            let record = record.map_err(|e| store_error(e, &id))?;
            self.next_seq = record.seq + 1;
            self.timeline.push(
                crate::render::timeline::human_line(&record, false)
                    .trim_end()
                    .to_owned(),
            );
            self.outputs.feed(&record);
            // Trimmed in batches, so a long log costs one move per thousand lines.
            if self.timeline.len() >= 2 * TIMELINE_LINES {
                self.timeline.drain(..TIMELINE_LINES);
            }
            if self.outputs.steps.len() >= 2 * OUTPUTS_KEPT {
                self.outputs.steps.drain(..OUTPUTS_KEPT);
            }
        }
        let extra = self.timeline.len().saturating_sub(TIMELINE_LINES);
        self.timeline.drain(..extra);
        let Some(last) = self.outputs.steps.last().cloned() else {
            return Ok(());
        };
        let key = (last.state.clone(), last.step);
        if self.tail_of.as_ref() != Some(&key) {
            self.tail_of = Some(key);
            self.tail.clear();
            self.partial.clear();
            self.partial_cut = false;
            self.tail_pos = last.offset.unwrap_or(0);
            self.agent = last
                .profile
                .as_deref()
                .and_then(agent_base)
                .map(StreamReader::new);
            self.tail_title = format!("{} (step {})", last.state, last.step);
            if let Some(text) = &last.in_log {
                self.push_text(text);
            }
        }
        self.tail_open = last.status == OutputState::Open;
        while last.offset.is_some() && last.end().is_none_or(|end| self.tail_pos < end) {
            let to = self.tail_pos.saturating_add(READ_CHUNK);
            let to = last.end().map_or(to, |end| end.min(to));
            let (bytes, upto) = store
                .read_output(&id, self.tail_pos, Some(to))
                .map_err(|e| store_error(e, &id))?;
            self.tail_pos = upto;
            self.push_bytes(&bytes);
            if upto < to {
                // The stream has no more yet.
                break;
            }
        }
        Ok(())
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        if let Some(reader) = &mut self.agent {
            let mut lines = Vec::new();
            reader.feed(bytes, &mut |activity| {
                lines.extend(crate::render::agent_view::lines(
                    &activity, false, 200, false,
                ));
            });
            self.tail.extend(lines);
        } else {
            let text = String::from_utf8_lossy(bytes).into_owned();
            self.push_text(&text);
        }
        let extra = self.tail.len().saturating_sub(TAIL_LINES);
        self.tail.drain(..extra);
    }

    fn push_text(&mut self, mut text: &str) {
        loop {
            let (piece, ended) = match text.find('\n') {
                Some(at) => (&text[..at], true),
                None => (text, false),
            };
            if !self.partial_cut {
                let room = LINE_MAX.saturating_sub(self.partial.len());
                if piece.len() <= room {
                    self.partial.push_str(piece);
                } else {
                    let mut cut = room;
                    while !piece.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    self.partial.push_str(&piece[..cut]);
                    self.partial.push('…');
                    self.partial_cut = true;
                }
            }
            if !ended {
                return;
            }
            let line = std::mem::take(&mut self.partial);
            self.partial_cut = false;
            self.tail.push(visible(line.trim_end_matches('\r')));
            text = &text[piece.len() + 1..];
        }
    }

    /// The tail's lines with the partial last one, for drawing.
    pub(crate) fn tail_lines(&self) -> Vec<String> {
        let mut lines = self.tail.clone();
        if !self.partial.is_empty() {
            lines.push(visible(&self.partial));
        }
        lines
    }
}

/// `text` without control characters, which could move the cursor or rewrite the screen.
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use dloop_core::state::{RunState, RunStatus};

    use super::*;

    fn info(id: &str, status: RunStatus, started_ms: u64, live: bool) -> RunInfo {
        RunInfo {
            id: id.to_owned(),
            meta: None,
            state: RunState {
                status,
                loop_name: "l".to_owned(),
                started_at: Timestamp::from_millis(started_ms),
                ..RunState::default()
            },
            live,
            queued: false,
        }
    }

    #[test]
    fn live_and_resumable_runs_come_first_and_finished_ones_are_capped() {
        let mut runs = vec![
            info("paused", RunStatus::Paused, 1, false),
            info("running", RunStatus::Running, 2, true),
        ];
        for n in 0..15 {
            runs.push(info(
                &format!("done-{n:02}"),
                RunStatus::Completed,
                100 + n,
                false,
            ));
        }
        let mut app = App::new();
        app.set_runs(runs, Timestamp::from_millis(1_000));
        assert_eq!(app.rows.len(), 2 + RECENT_FINISHED);
        assert_eq!(app.rows[0].id, "running");
        assert_eq!(app.rows[1].id, "paused");
        assert!(app.rows[1].resumable && !app.rows[1].live);
        // The newest finished runs are kept.
        assert_eq!(app.rows[2].id, "done-14");
    }

    #[test]
    fn a_child_is_listed_under_its_parent_one_level_deeper() {
        let mut child = info("child", RunStatus::Running, 5, true);
        child.state.parent = Some(dloop_core::state::ParentRun {
            run_id: "parent".to_owned(),
            state: "sub".to_owned(),
            step: 1,
            depth: 1,
        });
        let runs = vec![
            child,
            info("other", RunStatus::Paused, 4, false),
            info("parent", RunStatus::Running, 3, true),
        ];
        let mut app = App::new();
        app.set_runs(runs, Timestamp::from_millis(10));
        let rows: Vec<(&str, usize)> = app.rows.iter().map(|r| (r.id.as_str(), r.level)).collect();
        assert_eq!(rows, [("other", 0), ("parent", 0), ("child", 1)]);
    }

    #[test]
    fn the_selection_stays_on_its_run_when_the_list_changes() {
        let mut app = App::new();
        app.set_runs(
            vec![
                info("a", RunStatus::Running, 3, true),
                info("b", RunStatus::Paused, 2, false),
            ],
            Timestamp::from_millis(10),
        );
        app.move_by(1);
        assert_eq!(app.current().map(|r| r.id.as_str()), Some("b"));
        // A newer run appears above: the selection follows `b`.
        app.set_runs(
            vec![
                info("c", RunStatus::Running, 5, true),
                info("a", RunStatus::Running, 3, true),
                info("b", RunStatus::Paused, 2, false),
            ],
            Timestamp::from_millis(10),
        );
        assert_eq!(app.current().map(|r| r.id.as_str()), Some("b"));
        app.move_by(10);
        assert_eq!(app.selected, 2, "moves stop at the last row");
        app.move_by(-10);
        assert_eq!(app.selected, 0, "and at the first");
    }

    #[test]
    fn an_open_run_that_is_deleted_goes_back_to_the_list() {
        let mut app = App::new();
        let runs = || {
            vec![
                info("a", RunStatus::Completed, 3, false),
                info("b", RunStatus::Completed, 2, false),
            ]
        };
        app.set_runs(runs(), Timestamp::from_millis(10));
        app.screen = Screen::Detail;
        app.set_runs(runs(), Timestamp::from_millis(10));
        assert_eq!(app.screen, Screen::Detail, "still there: still open");
        app.set_runs(
            vec![info("b", RunStatus::Completed, 2, false)],
            Timestamp::from_millis(10),
        );
        assert_eq!(app.screen, Screen::List);
        assert_eq!(app.message, "a was deleted");
        assert_eq!(app.current().map(|r| r.id.as_str()), Some("b"));
    }

    #[test]
    fn a_plain_steps_tail_keeps_its_partial_line_and_drops_control_characters() {
        let mut detail = Detail::default();
        detail.push_bytes(b"one\ntw");
        assert_eq!(detail.tail_lines(), ["one", "tw"]);
        detail.push_bytes(b"o\x1b[2J\tx\n");
        assert_eq!(detail.tail_lines(), ["one", "two[2J x"]);
    }

    #[test]
    fn a_huge_line_is_cut_and_its_rest_dropped() {
        let mut detail = Detail::default();
        // 100 MB of one line, arriving in pieces, then its newline and a short line.
        let piece = "é".repeat(512 * 1024);
        for _ in 0..100 {
            detail.push_bytes(piece.as_bytes());
            assert!(detail.partial.len() <= LINE_MAX + '…'.len_utf8());
        }
        detail.push_bytes(b"tail\nnext\n");
        let lines = detail.tail_lines();
        assert_eq!(lines.len(), 2, "the huge line is one line");
        assert!(lines[0].ends_with('…') && lines[0].len() <= LINE_MAX + 3);
        assert!(!lines[0].contains("tail"), "its rest is dropped");
        assert_eq!(lines[1], "next");
    }
}
