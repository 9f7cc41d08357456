//! The JSON shape of one run: what `inspect --json`, `run --json` and `resume --json` print,
//! and the first keys of every row of `status --json` and `history --json`.
//!
//! Stable wire types (README "JSON shapes"): fields may be added, never renamed or removed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::runs::RunInfo;

/// One run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunJson {
    /// The run id.
    pub(crate) id: String,
    /// The loop's name.
    #[serde(rename = "loop")]
    pub(crate) loop_name: String,
    /// `running`, `paused`, `crashed`, `completed`, `failed`, `cancelled` or `timed_out`.
    pub(crate) status: &'static str,
    /// Why it is paused (`stopped`, `interrupted`, `max_steps`, `handoff`, `needs_decision`,
    /// `rate_limited`, `agent_error`, `queue_timeout`) or why it failed; `null` otherwise.
    pub(crate) reason: Option<String>,
    /// The state it is in (or ended in).
    pub(crate) state: Option<String>,
    /// State executions so far.
    pub(crate) step: u64,
    /// When it started (RFC 3339, UTC).
    pub(crate) started_at: String,
    /// Run time, summed over its sessions (time stopped is not counted).
    pub(crate) elapsed_ms: u64,
    /// The context.
    pub(crate) context: BTreeMap<String, String>,
    /// Captured results by name.
    pub(crate) captures: BTreeMap<String, CaptureJson>,
    /// Counters per state.
    pub(crate) states: BTreeMap<String, StateCountJson>,
    /// The last error (a failed run's cause, or the last `error` verdict).
    pub(crate) last_error: Option<String>,
    /// `limits.max_steps` in force.
    pub(crate) max_steps: u64,
    /// Sessions so far (1 + resumes).
    pub(crate) sessions: u32,
    /// Whether a live process is driving it.
    pub(crate) live: bool,
    /// The message of a pause (what to do next).
    pub(crate) message: Option<String>,
    /// A live run that waits (`status` is `running`): for its scope, or out a rate limit;
    /// `null` otherwise.
    pub(crate) waiting: Option<WaitingJson>,
    /// While its agent waits out a rate limit: when the step is tried again (RFC 3339, UTC).
    pub(crate) rate_limit_until: Option<String>,
    /// Rate-limit waits of the current step so far.
    pub(crate) rate_limit_waits: u32,
    /// Agent figures of the whole run (`null` when no agent ran).
    pub(crate) agent: Option<AgentJson>,
    /// A sub-loop run's parent; absent for a top-level run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parent: Option<ParentJson>,
    /// The child runs of its `loop:` states, in the order they started; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) children: Vec<ChildJson>,
}

/// The run a sub-loop run belongs to.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ParentJson {
    /// The parent run's id.
    pub(crate) run_id: String,
    /// The parent's `loop:` state that runs this one.
    pub(crate) state: String,
    /// The parent's step.
    pub(crate) step: u64,
    /// Nesting depth: 1 for a child of a top-level run.
    pub(crate) depth: u32,
}

/// A child run of a `loop:` state.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChildJson {
    /// The child run's id (`dloop inspect ID` shows it).
    pub(crate) run_id: String,
    /// The `loop:` state that runs it.
    pub(crate) state: String,
    /// The step.
    pub(crate) step: u64,
    /// The child's status (as its own `status`), where the command read it (`inspect`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<&'static str>,
}

/// Agent figures, summed over invocations (a state's, or the run's).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AgentJson {
    /// Agent invocations that finished.
    pub(crate) invocations: u64,
    /// Time spent in them.
    pub(crate) time_ms: u64,
    /// Turns, where the CLIs say.
    pub(crate) turns: u64,
    /// Input tokens not served from a cache.
    pub(crate) tokens_in: u64,
    /// Output tokens.
    pub(crate) tokens_out: u64,
    /// Input tokens read from a cache.
    pub(crate) tokens_cached: u64,
    /// Input tokens written to a cache.
    pub(crate) tokens_cache_write: u64,
    /// Cost in US dollars, where the CLIs say.
    pub(crate) cost_usd: f64,
    /// The latest model seen.
    pub(crate) model: Option<String>,
    /// The latest agent session id.
    pub(crate) session_id: Option<String>,
}

impl AgentJson {
    fn from_totals(totals: &dloop_core::state::AgentTotals) -> Option<AgentJson> {
        (!totals.is_empty()).then(|| AgentJson {
            invocations: totals.invocations,
            time_ms: totals.time_ms,
            turns: totals.turns,
            tokens_in: totals.tokens.input,
            tokens_out: totals.tokens.output,
            tokens_cached: totals.tokens.cached,
            tokens_cache_write: totals.tokens.cache_write,
            cost_usd: totals.cost_usd,
            model: totals.model.clone(),
            session_id: totals.session_id.clone(),
        })
    }
}

/// What a waiting run waits for.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WaitingJson {
    /// `scope` (in the scope queue) or `rate_limit` (its agent waits out a limit).
    #[serde(rename = "for")]
    pub(crate) waits_for: &'static str,
    /// The run's scope (scope waits).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) scope: Vec<String>,
    /// The run it first waited behind (scope waits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) holder: Option<String>,
    /// When it started waiting (RFC 3339, UTC; scope waits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<String>,
    /// When the step is tried again (RFC 3339, UTC; rate-limit waits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) until: Option<String>,
}

/// A captured result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CaptureJson {
    /// The state that produced it.
    pub(crate) state: String,
    /// Its step.
    pub(crate) step: u64,
    /// Exit status.
    pub(crate) exit_code: Option<i32>,
    /// Verdict.
    pub(crate) verdict: Option<String>,
    /// Action time.
    pub(crate) duration_ms: u64,
    /// Output size.
    pub(crate) bytes: u64,
    /// Where all of the output is, relative to the run folder (the run's output stream,
    /// `output.log`); `null` when the action printed nothing.
    pub(crate) output_path: Option<String>,
    /// Where the output starts in that file (`null` in runs from before the output stream).
    pub(crate) output_offset: Option<u64>,
    /// The output (whole up to 4 KiB, else head and tail).
    pub(crate) excerpt: String,
}

/// A state's latest action output.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LastOutputJson {
    /// The step that printed it.
    pub(crate) step: u64,
    /// Its size.
    pub(crate) bytes: u64,
    /// Whether `excerpt` is all of it.
    pub(crate) complete: bool,
    /// The output (whole up to 4 KiB, else head and tail).
    pub(crate) excerpt: String,
    /// Where all of it is, relative to the run folder; `null` when nothing was printed.
    pub(crate) output_path: Option<String>,
    /// Where it starts in that file.
    pub(crate) output_offset: Option<u64>,
}

/// Counters of one state.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StateCountJson {
    /// Times entered.
    pub(crate) visits: u64,
    /// `failure` or `error` verdicts.
    pub(crate) failures: u64,
    /// Time in its actions.
    pub(crate) time_ms: u64,
    /// Its latest action's output (`null` before its first action ends).
    pub(crate) last_output: Option<LastOutputJson>,
    /// Its agent figures (`null` for states that ran no agent).
    pub(crate) agent: Option<AgentJson>,
}

impl RunJson {
    /// The wire form of `info`.
    pub(crate) fn from_info(info: &RunInfo) -> RunJson {
        let state = &info.state;
        let reason = match (state.pause_reason, state.status) {
            (Some(reason), _) => Some(reason.as_str().to_owned()),
            (None, dloop_core::state::RunStatus::Failed) => state.message.clone(),
            (None, _) => None,
        };
        RunJson {
            id: info.id.clone(),
            loop_name: if state.loop_name.is_empty() {
                info.meta
                    .as_ref()
                    .map(|m| m.loop_name.clone())
                    .or_else(|| {
                        dloop_core::run_id::RunId::parse(&info.id)
                            .ok()
                            .map(|id| id.loop_name().to_owned())
                    })
                    .unwrap_or_default()
            } else {
                state.loop_name.clone()
            },
            status: info.status(),
            reason,
            state: state.current.clone(),
            step: state.step,
            started_at: state.started_at.to_string(),
            elapsed_ms: state.elapsed_ms(),
            context: state.context.clone(),
            captures: state
                .captures
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        CaptureJson {
                            state: c.state.clone(),
                            step: c.step,
                            exit_code: c.result.exit_code,
                            verdict: c.verdict.clone(),
                            duration_ms: c.result.duration_ms,
                            bytes: c.result.bytes,
                            output_path: Some(c.result.output_path.clone())
                                .filter(|p| !p.is_empty()),
                            output_offset: c.result.output_offset,
                            excerpt: c.result.excerpt.clone(),
                        },
                    )
                })
                .collect(),
            states: state
                .states
                .iter()
                .map(|(name, s)| {
                    (
                        name.clone(),
                        StateCountJson {
                            visits: s.visits,
                            failures: s.failures,
                            time_ms: s.time_ms,
                            last_output: s.last_output.as_ref().map(|o| LastOutputJson {
                                step: o.step,
                                bytes: o.bytes,
                                complete: o.complete,
                                excerpt: o.excerpt.clone(),
                                output_path: Some(o.output_path.clone()).filter(|p| !p.is_empty()),
                                output_offset: o.output_offset,
                            }),
                            agent: AgentJson::from_totals(&s.agent),
                        },
                    )
                })
                .collect(),
            last_error: state.last_error.clone(),
            max_steps: state.max_steps,
            sessions: state.sessions,
            live: info.live,
            message: state.message.clone(),
            waiting: match (info.scope_wait(), info.rate_limit_wait()) {
                (Some(wait), _) => Some(WaitingJson {
                    waits_for: "scope",
                    scope: wait.scope.clone(),
                    holder: Some(wait.holder.clone()),
                    since: Some(wait.since.to_string()),
                    until: None,
                }),
                (None, Some(_)) if info.live => Some(WaitingJson {
                    waits_for: "rate_limit",
                    scope: Vec::new(),
                    holder: None,
                    since: None,
                    until: state.rate_limit_until.map(|t| t.to_string()),
                }),
                _ => None,
            },
            rate_limit_until: state.rate_limit_until.map(|t| t.to_string()),
            rate_limit_waits: state.rate_limit_waits,
            agent: AgentJson::from_totals(&state.agent),
            parent: state.parent.as_ref().map(|p| ParentJson {
                run_id: p.run_id.clone(),
                state: p.state.clone(),
                step: p.step,
                depth: p.depth,
            }),
            children: state
                .children
                .iter()
                .map(|c| ChildJson {
                    run_id: c.run_id.clone(),
                    state: c.state.clone(),
                    step: c.step,
                    status: None,
                })
                .collect(),
        }
    }
}

/// One row of `history --json`: the [`RunJson`] keys first, then how the run ended.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HistoryRowJson {
    /// The run, as `inspect --json` shows it.
    #[serde(flatten)]
    pub(crate) run: RunJson,
    /// How it ended: `completed`, `failed`, `cancelled` or `timed_out` (the same as `status`).
    pub(crate) outcome: &'static str,
    /// When it ended: the time of its last record (RFC 3339, UTC).
    pub(crate) finished_at: String,
}

impl HistoryRowJson {
    /// The wire form of a finished run.
    pub(crate) fn from_info(info: &RunInfo) -> HistoryRowJson {
        HistoryRowJson {
            run: RunJson::from_info(info),
            outcome: info.status(),
            finished_at: info.state.last_ts.to_string(),
        }
    }
}
