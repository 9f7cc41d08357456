//! `dloop replay`'s report: the path taken beside the recorded one, the divergence, and the
//! cost avoided, as a table for people ([`ReplayView::human`]) or the documented JSON shape
//! ([`ReplayJson`]).

use std::fmt::Write as _;

use dloop_runtime::replay::{EndPoint, ReplayReport, StepSource};
use serde::Serialize;

use super::Paint;
use super::run_view::duration;

/// A replay report and what it was replayed against.
pub(crate) struct ReplayView<'a> {
    /// The report.
    pub(crate) report: &'a ReplayReport,
    /// The loop file given as LOOP, as shown; `None`: the run's own definition.
    pub(crate) against: Option<&'a str>,
}

impl ReplayView<'_> {
    /// The report as text: a header, one row per step, the outcome, the cost avoided.
    pub(crate) fn human(&self, color: bool) -> String {
        let r = self.report;
        let mut out = format!(
            "replay of run {} against {}\n",
            Paint::Bold.apply(color, &r.source),
            self.against
                .map_or_else(|| "its own definition".to_owned(), |a| a.to_owned())
        );
        let rows: Vec<[String; 5]> = r
            .steps
            .iter()
            .map(|s| {
                let state = match &s.recorded_state {
                    Some(rec) if *rec == s.state => s.state.clone(),
                    Some(rec) => format!("{} (recorded: {rec})", s.state),
                    None => format!("{} (not recorded)", s.state),
                };
                let differs = s.recorded_state.as_deref() == Some(s.state.as_str())
                    && s.verdict.is_some()
                    && s.recorded_verdict.is_some()
                    && s.verdict != s.recorded_verdict;
                let result = match s.source {
                    StepSource::Reused if differs => "reused, verdict differs".to_owned(),
                    StepSource::Live if differs => "live, verdict differs".to_owned(),
                    StepSource::NoAction if differs => "verdict differs".to_owned(),
                    StepSource::NoAction => "-".to_owned(),
                    other => other.as_str().to_owned(),
                };
                [
                    s.step.to_string(),
                    state,
                    s.recorded_verdict.clone().unwrap_or_else(|| "-".to_owned()),
                    s.verdict.clone().unwrap_or_else(|| "-".to_owned()),
                    result,
                ]
            })
            .collect();
        let header = ["STEP", "STATE", "RECORDED", "REPLAYED", "RESULT"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut text = format!("{:>w$}", cells[0], w = widths[0]);
            for (i, cell) in cells.iter().enumerate().skip(1) {
                if i == 4 {
                    text.push_str(&format!("  {cell}"));
                } else {
                    text.push_str(&format!("  {cell:<w$}", w = widths[i]));
                }
            }
            format!("{}\n", text.trim_end())
        };
        out.push_str(&line(header));
        for row in &rows {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
        }
        match &r.divergence {
            None if r.stopped => {
                let _ = writeln!(
                    out,
                    "{} at step {}: the replay was stopped before it reached the recorded end \
                     ({})",
                    Paint::Yellow.apply(color, "stopped"),
                    r.end.step,
                    r.recorded_end
                );
                if r.live {
                    let _ = writeln!(out, "run {} is paused: `dloop resume` goes on", r.run_id);
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "{}: the replay reached the recorded end ({})",
                    Paint::Green.apply(color, "matched"),
                    r.recorded_end
                );
            }
            Some(d) => {
                let _ = writeln!(
                    out,
                    "{} at step {} (`{}`): {}",
                    Paint::Yellow.apply(color, "diverged"),
                    d.step,
                    d.state,
                    d.reason
                );
                if r.live {
                    let _ = writeln!(out, "went on live as run {}: {}", r.run_id, r.end);
                } else {
                    let _ = writeln!(
                        out,
                        "recorded end: {}; `--live` goes on for real from step {}",
                        r.recorded_end, d.step
                    );
                }
            }
        }
        let s = &r.saved;
        let mut avoided = vec![format!(
            "{} action{} ({} of action time)",
            s.actions,
            if s.actions == 1 { "" } else { "s" },
            duration(s.action_ms)
        )];
        if s.judge_calls > 0 {
            avoided.push(format!(
                "{} judge call{}",
                s.judge_calls,
                if s.judge_calls == 1 { "" } else { "s" }
            ));
        }
        let tokens = s.tokens.input + s.tokens.output;
        if tokens > 0 || s.agent_ms > 0 || s.cost_usd.is_some() {
            let mut agent = format!("{} tokens", thousands(tokens));
            if let Some(cost) = s.cost_usd {
                agent.push_str(&format!(", ${cost:.4}"));
            }
            agent.push_str(&format!(", {} of agent time", duration(s.agent_ms)));
            avoided.push(agent);
        }
        let _ = writeln!(out, "cost avoided: {}", avoided.join("; "));
        out
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `dloop replay --json`: one object.
#[derive(Debug, Serialize)]
pub(crate) struct ReplayJson {
    /// The recorded run.
    pub(crate) source: String,
    /// The loop file replayed, as given; `null`: the run's own definition.
    pub(crate) definition: Option<String>,
    /// `matched` (no divergence), `diverged`, or `stopped` (a stop cut the replay short
    /// before either).
    pub(crate) outcome: &'static str,
    /// Whether `--live` was given.
    pub(crate) live: bool,
    /// With `--live`: the new run (resumable like any); `null` otherwise (a plain replay
    /// leaves no run behind).
    pub(crate) run_id: Option<String>,
    /// The replay's path, one object per step.
    pub(crate) steps: Vec<StepJson>,
    /// The first divergence, or `null`.
    pub(crate) divergence: Option<DivergenceJson>,
    /// What reusing the record avoided.
    pub(crate) saved: SavedJson,
    /// Where the recorded run ended (or is).
    pub(crate) recorded_end: EndJson,
    /// Where the replay ended.
    pub(crate) end: EndJson,
}

/// One step of [`ReplayJson::steps`].
#[derive(Debug, Serialize)]
pub(crate) struct StepJson {
    /// The step number.
    pub(crate) step: u64,
    /// The state the replay entered.
    pub(crate) state: String,
    /// The state the recorded run entered at this step, `null` when it has none.
    pub(crate) recorded_state: Option<String>,
    /// The recorded verdict, or `null`.
    pub(crate) recorded_verdict: Option<String>,
    /// The replay's verdict, or `null`.
    pub(crate) verdict: Option<String>,
    /// `reused` (from the record), `live` (run for real), `no_action`, or `stopped` (the
    /// divergence).
    pub(crate) result: &'static str,
}

/// [`ReplayJson::divergence`].
#[derive(Debug, Serialize)]
pub(crate) struct DivergenceJson {
    /// The step.
    pub(crate) step: u64,
    /// The replay's state there.
    pub(crate) state: String,
    /// `state`, `input`, `judge`, `end_of_record` or `end`.
    pub(crate) kind: &'static str,
    /// What differs, in words.
    pub(crate) reason: String,
}

/// [`ReplayJson::saved`].
#[derive(Debug, Serialize)]
pub(crate) struct SavedJson {
    /// Action results reused.
    pub(crate) actions: u64,
    /// Judge answers reused.
    pub(crate) judge_calls: u64,
    /// Tokens of the reused agent and judge calls.
    pub(crate) tokens: dloop_core::event::TokenUsage,
    /// Their cost in US dollars, `null` when none reported one.
    pub(crate) cost_usd: Option<f64>,
    /// Wall time of the reused agent and judge calls.
    pub(crate) agent_ms: u64,
    /// Wall time of all reused actions.
    pub(crate) action_ms: u64,
}

/// [`ReplayJson::end`] and [`ReplayJson::recorded_end`].
#[derive(Debug, Serialize)]
pub(crate) struct EndJson {
    /// A status word of `inspect --json`.
    pub(crate) status: &'static str,
    /// The state.
    pub(crate) state: Option<String>,
    /// The step.
    pub(crate) step: u64,
}

impl From<&EndPoint> for EndJson {
    fn from(end: &EndPoint) -> Self {
        Self {
            status: end.status.as_str(),
            state: end.state.clone(),
            step: end.step,
        }
    }
}

impl From<&ReplayView<'_>> for ReplayJson {
    fn from(view: &ReplayView<'_>) -> Self {
        let r = view.report;
        Self {
            source: r.source.clone(),
            definition: view.against.map(str::to_owned),
            outcome: if r.stopped {
                "stopped"
            } else if r.matched() {
                "matched"
            } else {
                "diverged"
            },
            live: r.live,
            run_id: r.live.then(|| r.run_id.clone()),
            steps: r
                .steps
                .iter()
                .map(|s| StepJson {
                    step: s.step,
                    state: s.state.clone(),
                    recorded_state: s.recorded_state.clone(),
                    recorded_verdict: s.recorded_verdict.clone(),
                    verdict: s.verdict.clone(),
                    result: s.source.as_str(),
                })
                .collect(),
            divergence: r.divergence.as_ref().map(|d| DivergenceJson {
                step: d.step,
                state: d.state.clone(),
                kind: d.kind.as_str(),
                reason: d.reason.clone(),
            }),
            saved: SavedJson {
                actions: r.saved.actions,
                judge_calls: r.saved.judge_calls,
                tokens: r.saved.tokens,
                cost_usd: r.saved.cost_usd,
                agent_ms: r.saved.agent_ms,
                action_ms: r.saved.action_ms,
            },
            recorded_end: (&r.recorded_end).into(),
            end: (&r.end).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use dloop_core::RunState;
    use dloop_core::event::TokenUsage;
    use dloop_core::state::RunStatus;
    use dloop_runtime::replay::{Divergence, DivergenceKind, ReplayedStep, Savings};

    use super::*;

    fn step(
        step: u64,
        state: &str,
        recorded: Option<(&str, &str)>,
        verdict: Option<&str>,
        source: StepSource,
    ) -> ReplayedStep {
        ReplayedStep {
            step,
            state: state.to_owned(),
            verdict: verdict.map(str::to_owned),
            recorded_state: recorded.map(|(s, _)| s.to_owned()),
            recorded_verdict: recorded.map(|(_, v)| v.to_owned()),
            source,
        }
    }

    /// A live replay that diverged on routing at step 3, with agent figures to show.
    fn live_report() -> ReplayReport {
        ReplayReport {
            source: "fix-20261130T101500-ab12".to_owned(),
            run_id: "fix-20261130T111500-cd34".to_owned(),
            live: true,
            steps: vec![
                step(
                    1,
                    "test",
                    Some(("test", "failure")),
                    Some("failure"),
                    StepSource::Reused,
                ),
                step(
                    2,
                    "fix",
                    Some(("fix", "success")),
                    Some("partial"),
                    StepSource::Reused,
                ),
                step(
                    3,
                    "review",
                    Some(("test", "success")),
                    Some("success"),
                    StepSource::Live,
                ),
                step(4, "test", None, Some("success"), StepSource::Live),
                step(4, "done", None, None, StepSource::NoAction),
            ],
            divergence: Some(Divergence {
                step: 3,
                state: "review".to_owned(),
                kind: DivergenceKind::State,
                reason: "entered `review` where the recorded run entered `test`".to_owned(),
            }),
            stopped: false,
            saved: Savings {
                actions: 2,
                judge_calls: 1,
                tokens: TokenUsage {
                    input: 1200,
                    output: 640,
                    cached: 25000,
                    cache_write: 0,
                },
                cost_usd: Some(0.0421),
                agent_ms: 38_900,
                action_ms: 41_200,
            },
            recorded_end: EndPoint {
                status: RunStatus::Completed,
                state: Some("done".to_owned()),
                step: 3,
            },
            end: EndPoint {
                status: RunStatus::Completed,
                state: Some("done".to_owned()),
                step: 4,
            },
            state: RunState::default(),
        }
    }

    #[test]
    fn a_live_replay_shows_where_it_left_the_record_and_what_it_saved() {
        let report = live_report();
        let view = ReplayView {
            report: &report,
            against: Some(".loops/fix.yaml"),
        };
        insta::assert_snapshot!(view.human(false));
        let json = serde_json::to_value(ReplayJson::from(&view)).expect("serializes");
        assert_eq!(json["outcome"], "diverged");
        assert_eq!(json["run_id"], "fix-20261130T111500-cd34");
        assert_eq!(json["divergence"]["kind"], "state");
        assert_eq!(json["steps"][2]["recorded_state"], "test");
        assert_eq!(json["steps"][3]["recorded_state"], serde_json::Value::Null);
        assert_eq!(json["saved"]["tokens"]["cached"], 25000);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
