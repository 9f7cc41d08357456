//! A run's timeline for the web view: one [`StepJson`] per step (state execution), built from
//! the log's records in order. The same builder serves a whole timeline
//! (`/api/runs/ID/steps`, records from seq 1) and the live feed (one record at a time, each
//! change pushed as the step it touched), so both always agree.
//!
//! A whole timeline can be far too big to send (a run of 100,000 records has some 25,000
//! steps: 7 MB of JSON, a table the browser redraws on every step): a [`Timeline`] keeps a
//! window of the newest steps, counts the ones it let go ([`Timeline::earlier`]), and keeps the
//! path taken (states visited, moves made) whole for the diagram, which is as small as the
//! loop.
//!
//! A step is keyed by its number and state: a step that runs again under the same number (a
//! rate-limit wait, a resume's re-run of an interrupted action) updates its row instead of
//! adding one. (A terminal state is entered under the number of the step that led to it, so
//! the number alone is not a key.)

use std::collections::BTreeSet;

use dloop_core::Record;
use dloop_core::event::Event;
use serde::Serialize;

/// One step of a run (wire type of `/api/runs/ID/steps` and the `step` event).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StepJson {
    /// The step number, from 1.
    pub(crate) step: u64,
    /// The state it executed.
    pub(crate) state: String,
    /// `running` (not ended yet, or its runner died without a record), `finished` or
    /// `interrupted`.
    pub(crate) status: &'static str,
    /// When it was entered (RFC 3339, UTC).
    pub(crate) started_at: String,
    /// When it ended (its verdict, or the interruption), when it did.
    pub(crate) ended_at: Option<String>,
    /// The action's run time (else the time from entering to the end); `null` while running.
    pub(crate) duration_ms: Option<u64>,
    /// The evaluator's verdict.
    pub(crate) verdict: Option<String>,
    /// The action's exit status.
    pub(crate) exit_code: Option<i32>,
    /// `shell`, `prompt` or `loop`; `null` for a state without action.
    pub(crate) action: Option<String>,
    /// Agent input tokens (not cached).
    pub(crate) tokens_in: u64,
    /// Agent output tokens.
    pub(crate) tokens_out: u64,
    /// Agent cost in USD, where the CLI says.
    pub(crate) cost_usd: Option<f64>,
    /// Bytes of output, once known.
    pub(crate) output_bytes: Option<u64>,
    /// Whether the step has output to fetch (`/api/runs/ID/output/STEP`).
    pub(crate) has_output: bool,
    /// The state it moved to.
    pub(crate) next: Option<String>,
    /// The last record that changed this row.
    pub(crate) seq: u64,
}

/// Builds steps from records.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    /// The steps, oldest first (the newest `keep` of them, once [`Timeline::finish`]ed).
    pub(crate) steps: Vec<StepJson>,
    /// The seq of the last record fed.
    pub(crate) last_seq: u64,
    /// How many steps came before `steps[0]` (let go, or never read).
    pub(crate) earlier: u64,
    /// Every state a step entered.
    pub(crate) visited: BTreeSet<String>,
    /// Every move between states: (from, to).
    pub(crate) taken: BTreeSet<(String, String)>,
    /// The most steps kept (`None`: all).
    keep: Option<usize>,
}

impl Timeline {
    /// A timeline that keeps only the newest `keep` steps (at least 1).
    pub(crate) fn newest(keep: usize) -> Timeline {
        Timeline {
            keep: Some(keep.max(1)),
            ..Timeline::default()
        }
    }

    /// How many steps were fed: the index the next new step gets.
    pub(crate) fn total(&self) -> u64 {
        self.earlier + self.steps.len() as u64
    }

    /// Lets go of the steps beyond the window (feeding does so in batches).
    pub(crate) fn finish(&mut self) {
        if let Some(keep) = self.keep {
            let extra = self.steps.len().saturating_sub(keep);
            self.steps.drain(..extra);
            self.earlier += extra as u64;
        }
    }

    /// Takes one record; returns the index of the step it changed, if any.
    pub(crate) fn feed(&mut self, record: &Record) -> Option<usize> {
        self.last_seq = record.seq;
        let ts = record.ts.to_string();
        let index = match &record.event {
            Event::StateEntered { state, step, .. } => {
                let row = StepJson {
                    step: *step,
                    state: state.clone(),
                    status: "running",
                    started_at: ts,
                    ended_at: None,
                    duration_ms: None,
                    verdict: None,
                    exit_code: None,
                    action: None,
                    tokens_in: 0,
                    tokens_out: 0,
                    cost_usd: None,
                    output_bytes: None,
                    has_output: false,
                    next: None,
                    seq: record.seq,
                };
                self.visited.insert(state.clone());
                match self.position(*step, state) {
                    Some(i) => {
                        self.steps[i] = row;
                        i
                    }
                    None => {
                        if let Some(last) = self.steps.last() {
                            self.taken.insert((last.state.clone(), state.clone()));
                        }
                        self.steps.push(row);
                        // Let go in batches: one move per `keep` steps, not one per step.
                        if let Some(keep) = self.keep
                            && self.steps.len() >= 2 * keep
                        {
                            self.steps.drain(..keep);
                            self.earlier += keep as u64;
                        }
                        self.steps.len() - 1
                    }
                }
            }
            Event::ActionStarted {
                step, kind, state, ..
            } => {
                let i = self.position(*step, state)?;
                let row = &mut self.steps[i];
                row.status = "running";
                row.action = serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned));
                row.has_output = true;
                i
            }
            Event::ActionFinished {
                step,
                result,
                state,
                ..
            } => {
                let i = self.position(*step, state)?;
                let row = &mut self.steps[i];
                row.duration_ms = Some(result.duration_ms);
                row.exit_code = result.exit_code;
                row.output_bytes = Some(result.bytes);
                if let Some(agent) = &result.agent {
                    row.tokens_in += agent.tokens.input;
                    row.tokens_out += agent.tokens.output;
                    if let Some(cost) = agent.cost_usd {
                        row.cost_usd = Some(row.cost_usd.unwrap_or(0.0) + cost);
                    }
                }
                i
            }
            Event::ActionInterrupted {
                step, bytes, state, ..
            } => {
                let i = self.position(*step, state)?;
                let row = &mut self.steps[i];
                row.status = "interrupted";
                row.output_bytes = row.output_bytes.or(*bytes);
                row.duration_ms = row.duration_ms.or(since(&row.started_at, record));
                row.ended_at = Some(ts);
                i
            }
            Event::Evaluated {
                step,
                verdict,
                state,
                ..
            } => {
                let i = self.position(*step, state)?;
                let row = &mut self.steps[i];
                row.verdict = Some(verdict.clone());
                row.status = "finished";
                row.duration_ms = row.duration_ms.or(since(&row.started_at, record));
                row.ended_at = Some(ts);
                i
            }
            Event::Transitioned { from, to, .. } => {
                self.taken.insert((from.clone(), to.clone()));
                let i = self.steps.len().checked_sub(1)?;
                let row = &mut self.steps[i];
                if row.state != *from {
                    return None;
                }
                row.next = Some(to.clone());
                i
            }
            // A terminal state's step ends with the run.
            Event::RunCompleted { .. } | Event::RunFailed { .. } => {
                let i = self.steps.len().checked_sub(1)?;
                let row = &mut self.steps[i];
                if row.status != "running" || row.action.is_some() {
                    return None;
                }
                row.status = "finished";
                row.duration_ms = Some(0);
                row.ended_at = Some(ts);
                i
            }
            _ => return None,
        };
        self.steps[index].seq = record.seq;
        Some(index)
    }

    /// The index of step `step` of `state` (searched from the end: the live feed touches the
    /// last ones).
    fn position(&self, step: u64, state: &str) -> Option<usize> {
        self.steps
            .iter()
            .rposition(|s| s.step == step && s.state == state)
    }
}

/// Milliseconds from `started_at` (RFC 3339) to the record's time.
fn since(started_at: &str, record: &Record) -> Option<u64> {
    let start = dloop_core::Timestamp::parse(started_at)?;
    Some(record.ts.as_millis().saturating_sub(start.as_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dloop_core::Timestamp;
    use dloop_core::event::{ActionKind, ActionResult};

    fn rec(seq: u64, ms: u64, event: Event) -> Record {
        Record {
            seq,
            ts: Timestamp::from_millis(ms),
            event,
        }
    }

    fn entered(state: &str, step: u64) -> Event {
        Event::StateEntered {
            state: state.into(),
            step,
            visit: 1,
        }
    }

    #[test]
    fn a_shell_step_then_a_terminal_one() {
        let mut t = Timeline::default();
        let records = [
            rec(1, 1_000, entered("test", 1)),
            rec(
                2,
                1_000,
                Event::ActionStarted {
                    state: "test".into(),
                    step: 1,
                    kind: ActionKind::Shell,
                    idempotency_key: "k".into(),
                    output_path: "output.log".into(),
                    output_offset: Some(0),
                    profile: None,
                    prompt: None,
                    continues_session: None,
                },
            ),
            rec(
                3,
                1_250,
                Event::ActionFinished {
                    state: "test".into(),
                    step: 1,
                    capture: None,
                    result: ActionResult {
                        exit_code: Some(0),
                        duration_ms: 240,
                        bytes: 6,
                        ..ActionResult::default()
                    },
                },
            ),
            rec(
                4,
                1_250,
                Event::Evaluated {
                    state: "test".into(),
                    step: 1,
                    verdict: "success".into(),
                    detail: None,
                    metric: None,
                    convergence: None,
                },
            ),
            rec(
                5,
                1_250,
                Event::Transitioned {
                    from: "test".into(),
                    to: "done".into(),
                    verdict: "success".into(),
                },
            ),
            // A terminal state is entered under the number of the step that led to it.
            rec(6, 1_250, entered("done", 1)),
        ];
        let changed: Vec<Option<usize>> = records.iter().map(|r| t.feed(r)).collect();
        assert_eq!(
            changed,
            [Some(0), Some(0), Some(0), Some(0), Some(0), Some(1)]
        );
        let first = &t.steps[0];
        assert_eq!(
            (first.status, first.duration_ms, first.exit_code),
            ("finished", Some(240), Some(0))
        );
        assert_eq!(first.verdict.as_deref(), Some("success"));
        assert_eq!(first.next.as_deref(), Some("done"));
        assert_eq!(
            (first.action.as_deref(), first.has_output),
            (Some("shell"), true)
        );
        assert_eq!(t.steps[1].status, "running");
        t.feed(&rec(
            7,
            1_300,
            Event::RunCompleted {
                state: "done".into(),
            },
        ));
        assert_eq!(t.steps[1].status, "finished");
        assert_eq!((t.last_seq, t.steps[1].seq), (7, 7));
    }

    #[test]
    fn a_window_keeps_the_newest_steps_and_the_whole_path() {
        let mut t = Timeline::newest(3);
        let mut seq = 0;
        for step in 1..=10u64 {
            let state = if step == 1 { "first" } else { "again" };
            seq += 1;
            t.feed(&rec(seq, 0, entered(state, step)));
            assert!(t.steps.len() < 6, "let go in batches");
        }
        t.finish();
        let steps: Vec<u64> = t.steps.iter().map(|s| s.step).collect();
        assert_eq!(steps, [8, 9, 10]);
        assert_eq!((t.earlier, t.total()), (7, 10));
        assert!(
            t.visited.contains("first"),
            "a state out of the window was visited"
        );
        assert!(t.taken.contains(&("first".to_owned(), "again".to_owned())));
        // The index a live feed gets is into the window.
        seq += 1;
        assert_eq!(t.feed(&rec(seq, 0, entered("again", 11))), Some(3));
    }

    #[test]
    fn a_step_entered_again_replaces_its_row() {
        let mut t = Timeline::default();
        t.feed(&rec(1, 0, entered("a", 1)));
        t.feed(&rec(2, 0, entered("a", 1)));
        assert_eq!(t.steps.len(), 1);
        // Records of an unknown step change nothing.
        assert_eq!(
            t.feed(&rec(
                3,
                0,
                Event::Evaluated {
                    state: "b".into(),
                    step: 9,
                    verdict: "x".into(),
                    detail: None,
                    metric: None,
                    convergence: None,
                }
            )),
            None
        );
    }
}
