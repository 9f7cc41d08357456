//! The `llm` evaluator in a session: the judge's call and its records.
//!
//! A state judged by `llm` (a prompt state's default, or `evaluate: llm` on any state) has its
//! action's `action_finished` made durable *before* the judge is called, so a crash while the
//! judge thinks leaves the log at "finished, not judged" and resume calls the judge again; the
//! action never runs twice. The judge's answer and its figures are one `judged` record, written
//! in the same batch as the `evaluated` that carries the verdict ([`dloop_core::judge`] turns
//! the answer into it). The judge's prompt is kept as the blob `judge-<seq>.txt`.
//!
//! What is not judged: a prompt whose agent did not answer (failure, no terminal event, a
//! context limit: the agent's own verdict stands, `failure` or `error`); a shell action that
//! could not start, timed out or was killed (`error`); and prompt states without an explicit
//! evaluator in a run started with `--no-llm` (the agent's outcome, that is its exit status).

use std::time::{Duration, Instant};

use dloop_core::event::{ActionKind, AgentOutcome, Event};
use dloop_core::interpolate::Quoting;
use dloop_core::judge;
use dloop_core::model::{ActionRef, Evaluate, LlmEval};
use dloop_core::state::{PendingAction, Phase, StepResult};
use dloop_core::transition::idempotency_key;
use dloop_store::{RunHandle, crash_point};

use super::Session;
use crate::actions::output::StepOutput;
use crate::actions::{ActionIo, ActionRequest, AgentCall};
use crate::agent_runners::profile_of;
use crate::error::RuntimeError;
use crate::interp::Lookup;
use crate::process::Limits;

impl<R: RunHandle> Session<'_, R> {
    /// The `llm` evaluator of the current state, if it has one in force: `Ok(None)` when the
    /// state is judged otherwise; else its records have been added to the batch.
    ///
    /// # Errors
    /// dloop's own I/O (the batch before the call, the prompt blob, the output stream).
    pub(super) fn judge(&mut self) -> Result<bool, RuntimeError> {
        let current = self.state.current.clone().unwrap_or_default();
        let step = self.state.step;
        let state_def = &self.def.states[&current];
        let Evaluate::Llm(spec) = state_def.evaluator() else {
            return Ok(false);
        };
        let implicit = state_def.evaluate.is_none();
        if implicit && self.state.judge_off {
            return Ok(false);
        }
        let result = match &self.state.phase {
            Phase::Finished { result } => Some(result.clone()),
            _ => None,
        };
        let is_prompt = matches!(state_def.action(), Some(ActionRef::Prompt(_)));
        if let Some(result) = &result {
            // Nothing to judge when the action gave no answer: the agent's own verdict (or the
            // process's error) stands.
            let answered = if is_prompt {
                result
                    .agent
                    .as_ref()
                    .is_some_and(|a| a.outcome == AgentOutcome::Success)
            } else {
                result.error.is_none() && result.timed_out.is_none() && result.signal.is_none()
            };
            if !answered {
                let (verdict, detail) = if is_prompt {
                    dloop_core::transition::agent::verdict_from_agent(result)
                } else {
                    ("error".to_owned(), Some(not_judged(result)))
                };
                self.record(Event::Evaluated {
                    state: current,
                    step,
                    verdict,
                    detail,
                    metric: None,
                    convergence: None,
                });
                return Ok(true);
            }
        }
        let lookup = Lookup {
            state: &self.state,
            run_dir: &self.run_dir,
            capture_limit: self.options.capture_limit,
            outputs: Some(&self.run),
        };
        let errored = |detail: String| Event::Evaluated {
            state: current.clone(),
            step,
            verdict: "error".to_owned(),
            detail: Some(detail),
            metric: None,
            convergence: None,
        };
        let text = match (&spec.source, &result) {
            (Some(source), _) => match lookup.render(source, Quoting::Verbatim) {
                Ok(text) => text,
                Err(err) => {
                    self.record(errored(format!("source: {err}")));
                    return Ok(true);
                }
            },
            (None, Some(result)) => {
                match result.agent.as_ref().and_then(|a| a.final_text.clone()) {
                    Some(answer) => answer,
                    None => lookup.output(&StepResult {
                        state: current.clone(),
                        step,
                        verdict: None,
                        result: result.clone(),
                    }),
                }
            }
            (None, None) => String::new(),
        };
        let render = |t: &str| lookup.render(t, Quoting::Verbatim).ok();
        let task = match state_def.action() {
            Some(ActionRef::Prompt(p)) => render(p),
            Some(ActionRef::Shell(s)) => Some(s.to_owned()),
            Some(ActionRef::SubLoop(name)) => Some(format!("run the loop `{name}`")),
            None => None,
        };
        let criteria = spec.prompt.as_deref().and_then(render);
        let shown = judge::excerpt(&text);
        let prompt = judge::render_prompt(criteria.as_deref(), task.as_deref(), &shown);
        let Some(profile) = judge_profile(&spec, self) else {
            self.record(errored(
                "the llm judge has no runner profile: set `evaluate.runner`, the state's or \
                 the loop's `runner`, or a default in .loops/config.yaml"
                    .to_owned(),
            ));
            return Ok(true);
        };
        let Some(runner) = self.options.agents.runner(&profile) else {
            self.record(errored(format!(
                "the llm judge's runner profile `{profile}` is not configured"
            )));
            return Ok(true);
        };
        // The action's result is durable before the judge runs: a crash from here on re-runs
        // only the judge.
        self.flush()?;
        let blob = format!("judge-{}.txt", self.state.last_seq + 1);
        self.run.put_blob(&blob, prompt.as_bytes())?;
        crash_point("before_judge");
        let key = format!("{}:judge", idempotency_key(&self.state.run_id, step));
        let pending = PendingAction {
            state: current.clone(),
            step,
            kind: ActionKind::Prompt,
            idempotency_key: key.clone(),
            output_path: dloop_core::event::OUTPUT_STREAM.to_owned(),
            output_offset: None,
            profile: Some(profile.clone()),
            prompt: Some(blob.clone()),
            continues_session: None,
            session_id: None,
        };
        let agent_limits = self.options.agents.limits(&profile);
        let now = self.options.clock.now();
        let limits = Limits {
            timeout: agent_limits.timeout,
            idle_timeout: agent_limits.idle_timeout,
            run_deadline: self.state.timeout_ms.map(|limit| {
                let left = limit.saturating_sub(self.state.elapsed_ms_at(now));
                Instant::now() + Duration::from_millis(left)
            }),
            kill_grace: self.options.kill_grace,
        };
        let work_dir = super::work_dir(&self.run_dir);
        let env = [
            ("DLOOP_RUN_ID".to_owned(), self.state.run_id.clone()),
            ("DLOOP_RUN_DIR".to_owned(), work_dir.display().to_string()),
            ("DLOOP_STATE".to_owned(), current.clone()),
            ("DLOOP_ITERATION".to_owned(), step.to_string()),
            ("DLOOP_IDEMPOTENCY_KEY".to_owned(), key),
            ("DLOOP_JUDGE".to_owned(), "1".to_owned()),
        ];
        let scratch = self.run_dir.join("scripts");
        let stream_path = self.run_dir.join(dloop_core::event::OUTPUT_STREAM);
        let cwd = self.options.project_root.clone();
        let request = ActionRequest {
            pending: &pending,
            text: prompt.as_bytes(),
            env: &env,
            cwd: &cwd,
            scratch: &scratch,
            limits,
            agent: Some(AgentCall {
                profile: &profile,
                model: None,
                extra_args: &[],
                resume_session: None,
                max_turns: agent_limits.max_turns,
            }),
        };
        let input_sha256 = Some(crate::replay::input_sha256(&request));
        let stop = std::sync::Arc::clone(&self.options.stop);
        let outcome = {
            let stream = self.stream()?;
            let mut output = StepOutput::new(stream);
            // The judge's stream is kept in the run's output stream (after the action's) but
            // not shown live: the step's output is the action's.
            let mut watch = |_, _: &[u8]| {};
            let mut activity = |_: &_| {};
            let mut note = |_| {};
            let mut io = ActionIo {
                output: &mut output,
                watch: &mut watch,
                stop: &stop,
                note: &mut note,
                activity: &mut activity,
            };
            let outcome = runner.run(&request, &mut io);
            let outcome = outcome.map_err(|source| RuntimeError::Output {
                path: stream_path.clone(),
                source,
            })?;
            output
                .finish(outcome.process.duration)
                .map_err(|source| RuntimeError::Output {
                    path: stream_path,
                    source,
                })?;
            outcome
        };
        crash_point("after_judge");
        if outcome.process.stopped {
            // Not judged: the log still ends at the action's result, so resume asks again.
            self.record(Event::RunPaused {
                reason: self.stop_reason(),
                message: Some(format!("stopped while judging state `{current}`")),
            });
            return Ok(true);
        }
        let duration_ms = outcome.process.duration.as_millis() as u64;
        let report = outcome.agent;
        let (verdict, detail, answer, raw) = match report.as_ref() {
            Some(r) if r.outcome == AgentOutcome::Success => {
                let answer = r.final_text.clone().unwrap_or_default();
                let judged = judge::judge(&answer, &shown, spec.min_confidence);
                let detail = if judged.raw.is_some() {
                    judged
                        .detail
                        .map(|d| format!("{d} (the raw answer is kept in the `judged` record)"))
                } else {
                    judged.detail
                };
                (judged.verdict, detail, judged.answer, judged.raw)
            }
            other => {
                let why = other
                    .map(|r| {
                        let msg = r.message.clone().unwrap_or_default();
                        format!("{} {msg}", r.outcome.as_str()).trim().to_owned()
                    })
                    .or_else(|| outcome.process.spawn_error.clone())
                    .unwrap_or_else(|| "no report".to_owned());
                let raw = other.and_then(|r| r.final_text.clone().or(r.message.clone()));
                (
                    "error".to_owned(),
                    Some(format!("the judge (`{profile}`) gave no answer: {why}")),
                    None,
                    raw,
                )
            }
        };
        self.record(Event::Judged {
            state: current.clone(),
            step,
            profile,
            prompt: Some(blob),
            answer,
            raw_answer: raw,
            agent: report.map(Box::new),
            duration_ms,
            input_sha256,
        });
        self.record(Event::Evaluated {
            state: current,
            step,
            verdict,
            detail,
            metric: None,
            convergence: None,
        });
        Ok(true)
    }
}

/// The judge's profile: the evaluator's `runner`, else the state's, the loop's, the default.
fn judge_profile<R: RunHandle>(spec: &LlmEval, session: &Session<'_, R>) -> Option<String> {
    let current = session.state.current.as_deref().unwrap_or_default();
    spec.runner.clone().or_else(|| {
        profile_of(
            session.def,
            &session.def.states[current],
            &*session.options.agents,
        )
    })
}

/// Why a shell action's result is not worth judging.
fn not_judged(result: &dloop_core::event::ActionResult) -> String {
    if let Some(error) = &result.error {
        format!("the action could not start: {error}")
    } else if result.timed_out.is_some() {
        "the action timed out".to_owned()
    } else {
        format!(
            "the action was killed by signal {}",
            result.signal.unwrap_or_default()
        )
    }
}
