//! What a replay reuses: the source run's recorded action results and judge answers, by step,
//! with the output bytes each action printed (read once through the [`Store`], checked against
//! the recorded SHA-256), the path the source took (the state and verdict of each step), and
//! the context values its resumes set (`resume -c`), by the step of the first action each
//! resume started.
//!
//! The source is only read. A log recorded before replay keys existed (an `action_finished`
//! that ran something but carries no `input_sha256`) is refused: without a key a recorded
//! result cannot be matched to a new call, and guessing would replay the wrong thing.

use std::collections::{BTreeMap, VecDeque};

use dloop_core::event::{ActionResult, AgentReport, Event};
use dloop_core::{Record, RunState};
use dloop_store::{RunMeta, Store};

use crate::actions::output::sha256_hex;
use crate::error::RuntimeError;

/// One recorded action call and its result.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) state: String,
    pub(crate) key: String,
    pub(crate) result: ActionResult,
    /// Every byte it printed, as the stream kept them.
    pub(crate) output: Vec<u8>,
    /// The prompt as sent (prompt actions), for saying what changed.
    pub(crate) prompt: Option<Vec<u8>>,
    /// The context the step's child run started with (`loop:` steps whose child can still be
    /// read): its `with:` values as rendered, for saying which one changed.
    pub(crate) child_context: Option<BTreeMap<String, String>>,
}

/// One recorded call of the `llm` judge.
#[derive(Debug, Clone)]
pub(crate) struct JudgeCall {
    pub(crate) state: String,
    pub(crate) key: String,
    pub(crate) agent: Option<AgentReport>,
    pub(crate) duration_ms: u64,
}

/// One step of the recorded run's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedStep {
    /// The step number.
    pub step: u64,
    /// The state it entered.
    pub state: String,
    /// Its last verdict, if it was judged.
    pub verdict: Option<String>,
}

/// The source run as a replay uses it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The source run's metadata (its definition copy, context, loop name).
    pub meta: RunMeta,
    /// Its state at the end of its log.
    pub state: RunState,
    /// Its `run_started` record.
    pub started: Event,
    /// Its path: every state it entered, in order (a state entered again at the same step by a
    /// resume counts once).
    pub steps: Vec<RecordedStep>,
    /// Where each step's entries are in `steps`.
    by_step: BTreeMap<u64, Vec<usize>>,
    pub(crate) actions: BTreeMap<u64, VecDeque<Attempt>>,
    pub(crate) judges: BTreeMap<u64, VecDeque<JudgeCall>>,
    /// Context values given to `resume -c` (recorded in `run_resumed`), by the step of the
    /// first action the source started after that resume: the replay applies them there.
    pub(crate) overrides: BTreeMap<u64, BTreeMap<String, String>>,
    /// Its sub-loop bundle (a submitted run's), which a live replay of its own definition
    /// keeps, so its children start from the same loops as the source's did.
    pub(crate) bundle: Option<Vec<u8>>,
}

impl Recorded {
    /// The `nth` state (from 0) the source entered at step `step`: a step's action state,
    /// then the terminal state it routed to, which takes no step of its own.
    pub fn entered(&self, step: u64, nth: usize) -> Option<&RecordedStep> {
        let at = *self.by_step.get(&step)?.get(nth)?;
        self.steps.get(at)
    }
}

/// Reads run `run_id` for a replay.
///
/// # Errors
/// [`RuntimeError::Replay`] for a log without replay keys or a damaged recorded output; the
/// store's errors.
pub fn load(store: &dyn Store, run_id: &str) -> Result<Recorded, RuntimeError> {
    let meta = store.read_meta(run_id)?;
    let records: Vec<Record> = store
        .records_from(run_id, 1)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut state = RunState::default();
    let mut started = None;
    let mut steps: Vec<RecordedStep> = Vec::new();
    let mut actions: BTreeMap<u64, VecDeque<Attempt>> = BTreeMap::new();
    let mut judges: BTreeMap<u64, VecDeque<JudgeCall>> = BTreeMap::new();
    let mut prompts: BTreeMap<u64, String> = BTreeMap::new();
    let mut children: BTreeMap<u64, String> = BTreeMap::new();
    let mut overrides: BTreeMap<u64, BTreeMap<String, String>> = BTreeMap::new();
    let mut resumed_with: Option<BTreeMap<String, String>> = None;
    for record in &records {
        state.apply(record);
        match &record.event {
            Event::RunResumed { overrides: o, .. } if !o.context.is_empty() => {
                resumed_with
                    .get_or_insert_default()
                    .extend(o.context.clone());
            }
            Event::ActionStarted { step, .. } => {
                if let Some(context) = resumed_with.take() {
                    overrides.entry(*step).or_default().extend(context);
                }
            }
            _ => {}
        }
        match &record.event {
            Event::RunStarted { .. } if started.is_none() => started = Some(record.event.clone()),
            Event::StateEntered { state, step, .. } => {
                let again = steps
                    .last()
                    .is_some_and(|s| s.step == *step && s.state == *state);
                if !again {
                    steps.push(RecordedStep {
                        step: *step,
                        state: state.clone(),
                        verdict: None,
                    });
                }
            }
            Event::Evaluated { step, verdict, .. } => {
                if let Some(s) = steps.iter_mut().rev().find(|s| s.step == *step) {
                    s.verdict = Some(verdict.clone());
                }
            }
            Event::ActionStarted {
                step,
                prompt: Some(name),
                ..
            } => {
                prompts.insert(*step, name.clone());
            }
            Event::SubLoopStarted {
                step, child_run_id, ..
            } => {
                children.insert(*step, child_run_id.clone());
            }
            Event::ActionFinished {
                state,
                step,
                result,
                ..
            } => {
                let Some(key) = result.input_sha256.clone() else {
                    // No key and no error: it ran, in a version without replay keys. An
                    // action that could not be rendered has no key and ran nothing.
                    if result.error.is_none() {
                        return Err(RuntimeError::Replay(format!(
                            "run {run_id} was recorded by a dloop without replay keys (its step \
                             {step} has no input_sha256); only runs recorded by this version \
                             or later can be replayed: run the loop again to record one"
                        )));
                    }
                    continue;
                };
                let output = recorded_output(store, run_id, *step, result)?;
                let prompt = match prompts.get(step) {
                    Some(name) => store.get_blob(run_id, name)?,
                    None => None,
                };
                actions.entry(*step).or_default().push_back(Attempt {
                    state: state.clone(),
                    key,
                    result: result.clone(),
                    output,
                    prompt,
                    // Only to explain a divergence: a child removed since (`dloop gc`) just
                    // makes the explanation vaguer.
                    child_context: children
                        .get(step)
                        .and_then(|id| store.read_meta(id).ok())
                        .map(|meta| meta.context),
                });
            }
            Event::Judged {
                state,
                step,
                agent,
                duration_ms,
                input_sha256,
                ..
            } => {
                let Some(key) = input_sha256.clone() else {
                    return Err(RuntimeError::Replay(format!(
                        "run {run_id} was recorded by a dloop without replay keys (the judge \
                         of its step {step} has no input_sha256); only runs recorded by this \
                         version or later can be replayed"
                    )));
                };
                judges.entry(*step).or_default().push_back(JudgeCall {
                    state: state.clone(),
                    key,
                    agent: agent.as_deref().cloned(),
                    duration_ms: *duration_ms,
                });
            }
            Event::RunRewound { .. } => {
                return Err(RuntimeError::Replay(format!(
                    "run {run_id} was rewound (`dloop rewind`); its log holds more than one \
                     history, so it cannot be replayed"
                )));
            }
            _ => {}
        }
    }
    let Some(started) = started else {
        return Err(RuntimeError::Replay(format!(
            "run {run_id} has not started: nothing to replay"
        )));
    };
    let mut by_step: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (at, entry) in steps.iter().enumerate() {
        by_step.entry(entry.step).or_default().push(at);
    }
    Ok(Recorded {
        meta,
        state,
        started,
        steps,
        by_step,
        actions,
        judges,
        overrides,
        bundle: store.get_blob(run_id, crate::subloop::BUNDLE_BLOB)?,
    })
}

/// The bytes an action printed, read from the source's stream and checked against the
/// recorded hash (after a power loss the stream's unsynced tail may be gone).
fn recorded_output(
    store: &dyn Store,
    run_id: &str,
    step: u64,
    result: &ActionResult,
) -> Result<Vec<u8>, RuntimeError> {
    let Some(offset) = result.output_offset else {
        return Ok(Vec::new());
    };
    let (bytes, _) = store.read_output(run_id, offset, Some(offset + result.bytes))?;
    if sha256_hex(&bytes) != result.sha256 {
        return Err(RuntimeError::Replay(format!(
            "the recorded output of step {step} of run {run_id} does not match its hash (the \
             output stream lost bytes); this run cannot be replayed"
        )));
    }
    Ok(bytes)
}
