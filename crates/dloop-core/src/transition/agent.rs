//! What a prompt state's agent result means for the run: the records that follow its
//! `action_finished` (rate-limit ladder, handoff, an agent that cannot work), the verdict of a
//! prompt state without an explicit evaluator, and how a prompt is framed when it carries a
//! handoff note or continues an interrupted session.
//!
//! Decisions (DESIGN.md section 8, issue 8):
//! - **Rate limited**: a `rate_limited` record; the same step's action runs again after the
//!   wait with the **same idempotency key** (the service refused, so the attempt did nothing;
//!   it is the same logical action, and it never counts as done). Past the ladder the state
//!   routes `rate_limited` if it names that route itself (`_` and `next` do not catch it: a
//!   loop that moves on after a limit that never cleared would "complete" having done
//!   nothing), else the run pauses (reason `rate_limited`, exit 3); resuming starts a fresh
//!   ladder.
//! - **Auth failed / unreachable**: never a verdict, never retried by itself: an
//!   `agent_unavailable` record and a pause (reason `agent_error`) whose message is the agent's
//!   own and says what to do; resume runs the step's action again (same key).
//! - **Handoff** (a line starting `CONTEXT_HANDOFF:` in a successful answer): a
//!   `handoff_detected` record; the same state runs again as a new step in a fresh session with
//!   the note in front of its prompt ([`frame_prompt`]); the run pauses first (reason
//!   `handoff`) unless the loop says `on_handoff: continue`.
//! - **Verdict from the agent's outcome** (a run with `--no-llm`, or an answer the `llm` judge
//!   never sees because the agent did not answer: `crate::judge`): success → `success`; the
//!   agent's own failure → `failure`; anything dloop could not get an answer from (no terminal
//!   event, a context limit, the agent interrupted, no agent report at all) → `error`, which
//!   routes `error`, retries, or fails the run with the reason.

use crate::event::{ActionResult, AgentOutcome, AgentReport, Event, PauseReason};
use crate::model::{LoopDef, OnHandoff, RateLimitPolicy, StateDef};
use crate::ratelimit::{LadderPosition, LadderStep, next_wait};
use crate::state::RunState;
use crate::timestamp::Timestamp;

/// The marker of a handoff line in an agent's final text.
pub const HANDOFF_MARKER: &str = "CONTEXT_HANDOFF:";

/// The verdict a prompt state routes on when its agent rate limits past its ladder (when the
/// state names it).
pub const RATE_LIMITED_VERDICT: &str = "rate_limited";

/// The handoff note in `final_text`: everything after the first `CONTEXT_HANDOFF:` that starts
/// a line (leading blanks allowed), to the end, trimmed. `None` when there is no such line.
pub fn handoff_note(final_text: &str) -> Option<String> {
    let mut offset = 0;
    for line in final_text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with(HANDOFF_MARKER) {
            let start = offset + (line.len() - trimmed.len()) + HANDOFF_MARKER.len();
            return Some(final_text[start..].trim().to_owned());
        }
        offset += line.len();
    }
    None
}

/// The prompt as sent: with a handoff note in front, or as a continuation of an interrupted
/// session. Exact framing (documented for loop authors):
///
/// ```text
/// A previous agent session on this task handed off its context. Its handoff note:
///
/// <note>
///
/// ---
///
/// <prompt>
/// ```
///
/// and for a continued session
///
/// ```text
/// You were interrupted before you finished this task. Continue where you left off.
///
/// ---
///
/// <prompt>
/// ```
pub fn frame_prompt(prompt: &str, handoff: Option<&str>, continuing: bool) -> String {
    let mut framed = String::new();
    if let Some(note) = handoff {
        framed.push_str(
            "A previous agent session on this task handed off its context. Its handoff note:\n\n",
        );
        framed.push_str(note);
        framed.push_str("\n\n---\n\n");
    }
    if continuing {
        framed.push_str(
            "You were interrupted before you finished this task. Continue where you left \
             off.\n\n---\n\n",
        );
    }
    framed.push_str(prompt);
    framed
}

/// The verdict of a prompt state from its agent's report alone (`--no-llm`, or an agent that did
/// not answer): `(verdict, detail)`.
pub fn verdict_from_agent(result: &ActionResult) -> (String, Option<String>) {
    let Some(report) = result.agent.as_deref() else {
        let detail = result
            .error
            .clone()
            .unwrap_or_else(|| "the agent runner gave no report".to_owned());
        return ("error".to_owned(), Some(detail));
    };
    let message = report.message.clone();
    let (verdict, detail) = match report.outcome {
        AgentOutcome::Success => ("success", None),
        AgentOutcome::Failure => ("failure", message),
        other => (
            "error",
            Some(match message {
                Some(m) => format!("{}: {m}", other.as_str()),
                None => other.as_str().to_owned(),
            }),
        ),
    };
    (verdict.to_owned(), detail)
}

/// The records that follow a prompt action's `action_finished` (already folded into `state`)
/// before it is judged: none for an ordinary answer. `policy` is the ladder in force (the
/// state's, else its profile's, else the default); `now` is the time of the records.
pub fn follow_up(
    def: &LoopDef,
    state_def: &StateDef,
    state: &RunState,
    report: &AgentReport,
    policy: &RateLimitPolicy,
    now: Timestamp,
) -> Vec<Event> {
    let current = state.current.clone().unwrap_or_default();
    let step = state.step;
    let message = report.message.clone().unwrap_or_default();
    match report.outcome {
        AgentOutcome::RateLimited => {
            let position = LadderPosition {
                waits: state.rate_limit_waits,
                waited_ms: state.rate_limit_waited_ms,
            };
            match next_wait(policy, position, report.resets_at, now) {
                LadderStep::Wait {
                    attempt,
                    wait_ms,
                    resume_at,
                } => vec![Event::RateLimited {
                    state: current,
                    step,
                    attempt,
                    wait_ms,
                    resume_at: Some(resume_at),
                    resets_at: report.resets_at,
                    evidence: message,
                    exhausted: false,
                }],
                LadderStep::Exhausted { waits, waited_ms } => {
                    let summary = format!(
                        "agent `{}` still rate limited after {waits} wait{} ({} s in all){}",
                        report.profile,
                        if waits == 1 { "" } else { "s" },
                        waited_ms / 1000,
                        if message.is_empty() {
                            String::new()
                        } else {
                            format!(": {message}")
                        }
                    );
                    let routed = state_def
                        .on
                        .as_ref()
                        .is_some_and(|on| on.contains_key(RATE_LIMITED_VERDICT));
                    if routed {
                        return vec![Event::Evaluated {
                            state: current,
                            step,
                            verdict: RATE_LIMITED_VERDICT.to_owned(),
                            detail: Some(summary),
                            metric: None,
                            convergence: None,
                        }];
                    }
                    vec![
                        Event::RateLimited {
                            state: current,
                            step,
                            attempt: waits,
                            wait_ms: 0,
                            resume_at: None,
                            resets_at: report.resets_at,
                            evidence: message,
                            exhausted: true,
                        },
                        Event::RunPaused {
                            reason: PauseReason::RateLimited,
                            message: Some(format!(
                                "{summary}; resume when the limit has reset (the step runs \
                                 again with a fresh ladder)"
                            )),
                        },
                    ]
                }
            }
        }
        AgentOutcome::AuthFailed | AgentOutcome::Unreachable => {
            let what = if report.outcome == AgentOutcome::AuthFailed {
                "could not authenticate (log in, or check its key or credits)"
            } else {
                "could not reach its service (check the network)"
            };
            // The agent's own message often ends a sentence already: one full stop, not two.
            let shown = message.trim_end().trim_end_matches(['.', ';']);
            let pause = format!(
                "agent `{}` {what}{}. Then resume: the step runs again",
                report.profile,
                if shown.is_empty() {
                    String::new()
                } else {
                    format!(": {shown}")
                }
            );
            vec![
                Event::AgentUnavailable {
                    state: current,
                    step,
                    outcome: report.outcome,
                    message,
                },
                Event::RunPaused {
                    reason: PauseReason::AgentError,
                    message: Some(pause),
                },
            ]
        }
        AgentOutcome::Success => {
            let Some(note) = report.final_text.as_deref().and_then(handoff_note) else {
                return Vec::new();
            };
            let mut events = vec![Event::HandoffDetected {
                state: current.clone(),
                step,
                message: note,
            }];
            if def.on_handoff() == OnHandoff::Pause {
                events.push(Event::RunPaused {
                    reason: PauseReason::Handoff,
                    message: Some(format!(
                        "the agent of state `{current}` handed off its context; resume to \
                         continue in a fresh session with its note in front of the prompt"
                    )),
                });
            }
            events
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
