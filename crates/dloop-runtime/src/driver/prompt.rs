//! Prompt states in a session: the prompt stored before its intent, the runner and its call,
//! the records that follow an agent's answer, and the verdict of a prompt state that has no
//! evaluator of its own. The decisions themselves are core's (`dloop_core::transition::agent`);
//! this file does the I/O around them.

use std::sync::Arc;

use dloop_core::event::{ActionKind, ActionResult, Event};
use dloop_core::interpolate::Quoting;
use dloop_core::model::{ActionRef, StateDef};
use dloop_core::state::{PendingAction, Phase};
use dloop_core::transition::agent::{follow_up, frame_prompt, verdict_from_agent};
use dloop_core::{Record, RunState};
use dloop_store::RunHandle;

use super::Session;
use crate::actions::ActionRunner;
use crate::agent_runners::{AgentLimits, profile_of, rate_limit_policy};
use crate::clock::Clock;
use crate::error::RuntimeError;
use crate::interp::Lookup;
use crate::observer::RunObserver;

/// A prompt action ready to run: its runner, the prompt as stored, and the call.
pub(super) type PreparedPrompt = (Arc<dyn ActionRunner>, Vec<u8>, AgentSetup);

/// What a prompt action's runner is called with, owned for the length of the action.
pub(super) struct AgentSetup {
    pub(super) profile: String,
    pub(super) model: Option<String>,
    pub(super) args: Vec<String>,
    pub(super) resume: Option<String>,
    pub(super) max_turns: Option<u64>,
    pub(super) limits: AgentLimits,
}

impl<R: RunHandle> Session<'_, R> {
    /// Completes a prompt action's intent before it is recorded: its profile, whether it
    /// continues a session (only where the profile can resume), and its prompt, rendered with
    /// values verbatim, framed (handoff note, continuation) and stored as the blob
    /// `prompt-<seq>.txt`, durable before the intent that names it. A prompt that cannot be
    /// rendered is not stored: the action then fails with the reason ([`Self::prompt_setup`]).
    ///
    /// # Errors
    /// The blob cannot be stored.
    pub(super) fn prepare_prompt(&mut self, intent: &mut Event) -> Result<(), RuntimeError> {
        let Event::ActionStarted {
            state,
            kind: ActionKind::Prompt,
            profile,
            prompt,
            continues_session,
            ..
        } = intent
        else {
            return Ok(());
        };
        let state_def = &self.def.states[state.as_str()];
        let Some(ActionRef::Prompt(text)) = state_def.action() else {
            return Ok(());
        };
        let agents = &*self.options.agents;
        *profile = profile_of(self.def, state_def, agents);
        if !profile.as_deref().is_some_and(|p| agents.can_resume(p)) {
            *continues_session = None;
        }
        let rendered = Lookup {
            state: &self.state,
            run_dir: &self.run_dir,
            capture_limit: self.options.capture_limit,
            outputs: Some(&self.run),
        }
        .render(text, Quoting::Verbatim);
        if let Ok(rendered) = rendered {
            let framed = frame_prompt(
                &rendered,
                self.state.handoff.as_deref(),
                continues_session.is_some(),
            );
            // The intent is the next record: it names the blob by its own seq.
            let name = format!("prompt-{}.txt", self.state.last_seq + 1);
            self.run.put_blob(&name, framed.as_bytes())?;
            *prompt = Some(name);
        }
        Ok(())
    }

    /// The runner, the prompt as stored, and the call of a prompt action; `Err` is the reason
    /// the action cannot start (recorded as its result's `error`).
    pub(super) fn prompt_setup(
        &self,
        pending: &PendingAction,
        text: &str,
    ) -> Result<PreparedPrompt, String> {
        let state_def = &self.def.states[&pending.state];
        let agents = &*self.options.agents;
        let Some(profile) = pending
            .profile
            .clone()
            .or_else(|| profile_of(self.def, state_def, agents))
        else {
            return Err("no runner profile for this prompt state".to_owned());
        };
        let Some(runner) = agents.runner(&profile) else {
            return Err(format!("runner profile `{profile}` is not configured"));
        };
        let prompt = match &pending.prompt {
            Some(name) => match self.run.get_blob(name) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Err(format!("the stored prompt `{name}` is missing")),
                Err(err) => return Err(format!("the stored prompt `{name}`: {err}")),
            },
            // Not stored because it could not be rendered: say why.
            None => {
                let lookup = Lookup {
                    state: &self.state,
                    run_dir: &self.run_dir,
                    capture_limit: self.options.capture_limit,
                    outputs: Some(&self.run),
                };
                return Err(match lookup.render(text, Quoting::Verbatim) {
                    Err(err) => format!("prompt: {err}"),
                    Ok(_) => "the prompt was not stored before the action".to_owned(),
                });
            }
        };
        let limits = agents.limits(&profile);
        let setup = AgentSetup {
            model: state_def.model.clone(),
            args: state_def.args.clone(),
            resume: pending.continues_session.clone(),
            max_turns: state_def.max_turns.or(limits.max_turns),
            limits,
            profile,
        };
        Ok((runner, prompt, setup))
    }

    /// Records what follows a prompt action's `action_finished` (folded already): a rate-limit
    /// wait or a spent ladder, an agent that cannot work, a handoff; nothing for an answer.
    pub(super) fn after_prompt(&mut self, pending: &PendingAction, profile: &str) {
        let Phase::Finished { result } = &self.state.phase else {
            return;
        };
        let Some(report) = result.agent.as_deref() else {
            return;
        };
        let state_def = &self.def.states[&pending.state];
        let policy = rate_limit_policy(state_def, profile, &*self.options.agents);
        let now = self.options.clock.now();
        let events = follow_up(self.def, state_def, &self.state, report, &policy, now);
        for event in events {
            self.record(event);
        }
    }
}

/// The `evaluated` record of a prompt state without an explicit evaluator in a run started with
/// `--no-llm` (otherwise the `llm` judge, [`super::judge`], has judged it first): its verdict
/// comes from the agent's outcome (`None` for any other state).
pub(super) fn agent_verdict(
    state_def: &StateDef,
    current: &str,
    step: u64,
    result: &ActionResult,
) -> Option<Event> {
    if state_def.evaluate.is_some() || !matches!(state_def.action(), Some(ActionRef::Prompt(_))) {
        return None;
    }
    let (verdict, detail) = verdict_from_agent(result);
    Some(Event::Evaluated {
        state: current.to_owned(),
        step,
        verdict,
        detail,
        metric: None,
        convergence: None,
    })
}

/// Appends `event` as a batch of its own (one write, one fdatasync) while an action runs, and
/// folds it. Returns how many records were written.
///
/// # Errors
/// The store's; the log then refuses further writes.
pub(super) fn append_now<R: RunHandle>(
    run: &mut R,
    state: &mut RunState,
    clock: &dyn Clock,
    observer: &mut dyn RunObserver,
    event: Event,
) -> Result<u64, RuntimeError> {
    let records: Vec<Record> = run.append(std::slice::from_ref(&event), clock.now())?;
    for record in &records {
        state.apply(record);
        observer.on_record(record, state);
    }
    Ok(records.len() as u64)
}
