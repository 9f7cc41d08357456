//! The replay's runners: they serve recorded results instead of starting processes.
//!
//! A [`Replayer`] holds the source run's unused results by step. Every action call of the
//! replaying session (shell, prompt, the `llm` judge) goes through a [`ReplayRunner`]: while the
//! replay follows the record, the call takes the next recorded result of its step, if that
//! result was made in the same state with the same replay key ([`super::input_sha256`]); its
//! recorded output bytes go through `io` (so captures and evaluators see exactly what the
//! source saw) and its exit status, signal, timeout and agent report are returned. No process
//! starts.
//!
//! The first call (or state entered, [`ReplayObserver`]) that does not match is the divergence,
//! kept once. Without `--live` the session is then stopped cleanly: the call returns "stopped"
//! (the session records the step interrupted and pauses), or a state that differs pauses before
//! its action starts. With `--live` the replayer goes live for good: that call and every later
//! one go to the real runner, and waits (`delay`, backoff) are real again ([`ReplayClock`];
//! while following the record they take no time). `loop:` steps are served the same way
//! through the replay's sub-loop host (`super::host`).
//!
//! Where the source was resumed with `resume -c`, the action it ran first after that resume
//! is stopped before it is served ([`Replayer::pause_for`]): the replay pauses there and
//! `replay_run` resumes it with the same values, so later steps render as the source's did.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dloop_core::event::{ActionKind, Event, TokenUsage};
use dloop_core::model::LoopDef;
use dloop_core::{Record, RunState, Timestamp};

use super::diverge::{Divergence, DivergenceKind, explain_call, explain_input};
use super::recorded::{Attempt, JudgeCall};
use crate::actions::output::Stream;
use crate::actions::{ActionIo, ActionNote, ActionOutcome, ActionRequest, ActionRunner};
use crate::agent_runners::{AgentLimits, AgentRunners};
use crate::clock::Clock;
use crate::observer::RunObserver;
use crate::process::{ProcessEnd, StopFlag, StopLevel};

/// What following the record saved: the recorded figures of every result reused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Savings {
    /// Action results reused (no process started).
    pub actions: u64,
    /// Judge answers reused.
    pub judge_calls: u64,
    /// Agent and judge tokens those calls had used.
    pub tokens: TokenUsage,
    /// Their cost in US dollars, summed over the calls that reported one.
    pub cost_usd: Option<f64>,
    /// Wall time of the reused agent and judge calls.
    pub agent_ms: u64,
    /// Wall time of every reused action (shell and prompt).
    pub action_ms: u64,
}

impl Savings {
    fn add_agent(&mut self, report: Option<&dloop_core::event::AgentReport>, ms: u64) {
        let Some(report) = report else {
            return;
        };
        self.agent_ms += ms;
        self.tokens.input += report.tokens.input;
        self.tokens.output += report.tokens.output;
        self.tokens.cached += report.tokens.cached;
        self.tokens.cache_write += report.tokens.cache_write;
        if let Some(cost) = report.cost_usd {
            *self.cost_usd.get_or_insert(0.0) += cost;
        }
    }
}

/// What the runners share while a replay runs.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub(crate) divergence: Option<Divergence>,
    pub(crate) saved: Savings,
    pub(crate) reused_steps: BTreeSet<u64>,
    pub(crate) live_steps: BTreeSet<u64>,
    /// The states the replay entered, per step (see [`super::Recorded::entered`]).
    entered: BTreeMap<u64, Vec<String>>,
    actions: BTreeMap<u64, VecDeque<Attempt>>,
    judges: BTreeMap<u64, VecDeque<JudgeCall>>,
    /// The source's `resume -c` values not yet applied, by step ([`Replayer::pause_for`]).
    overrides: BTreeMap<u64, BTreeMap<String, String>>,
    /// The values the replay's next resume sets (its action at that step was paused).
    pub(crate) resume_with: Option<BTreeMap<String, String>>,
}

/// The shared state of one replay (see the module docs).
#[derive(Debug)]
pub(crate) struct Replayer {
    progress: Mutex<Progress>,
    /// The recorded path, without the results (they are in `progress`).
    pub(crate) recorded: super::Recorded,
    /// `--live`: go on for real from the divergence.
    live_allowed: bool,
    live: AtomicBool,
    stop: Arc<StopFlag>,
    source_def: Option<LoopDef>,
    def: LoopDef,
}

impl Replayer {
    pub(crate) fn new(
        mut recorded: super::Recorded,
        def: &LoopDef,
        live_allowed: bool,
        stop: Arc<StopFlag>,
    ) -> Self {
        let actions = std::mem::take(&mut recorded.actions);
        let judges = std::mem::take(&mut recorded.judges);
        let overrides = std::mem::take(&mut recorded.overrides);
        Self {
            progress: Mutex::new(Progress {
                actions,
                judges,
                overrides,
                ..Progress::default()
            }),
            source_def: crate::runs::parse_definition(&recorded.meta.id, &recorded.meta.definition)
                .ok(),
            recorded,
            live_allowed,
            live: AtomicBool::new(false),
            stop,
            def: def.clone(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// Whether recorded results remain unused.
    pub(crate) fn has_unused(&self) -> bool {
        self.lock().actions.values().any(|q| !q.is_empty())
    }

    /// Whether the action of `step` must pause first, so the replay resumes with the context
    /// values the source was resumed with before its action of that step (`resume -c`): the
    /// source paused there too, and its later steps rendered with those values. Only while
    /// the replay follows the record; each set of values is applied once.
    pub(crate) fn pause_for(&self, step: u64) -> bool {
        if self.is_live() {
            return false;
        }
        let mut progress = self.lock();
        match progress.overrides.remove(&step) {
            Some(context) => {
                progress.resume_with = Some(context);
                true
            }
            None => false,
        }
    }

    /// Keeps the first divergence; goes live (`--live`) or asks the session to stop at `level`.
    /// Returns whether the call that found it may go on live.
    pub(crate) fn diverge(&self, divergence: Divergence, level: StopLevel) -> bool {
        let mut progress = self.lock();
        if progress.divergence.is_none() {
            progress.divergence = Some(divergence);
        }
        drop(progress);
        if self.live_allowed {
            self.live.store(true, Ordering::SeqCst);
            true
        } else {
            self.stop.raise(level);
            false
        }
    }

    /// A state was entered at `step`: checked against the recorded path.
    fn entered(&self, state: &str, step: u64) {
        let mut progress = self.lock();
        let seen = progress.entered.entry(step).or_default();
        if seen.last().is_some_and(|s| s == state) {
            return;
        }
        seen.push(state.to_owned());
        let nth = seen.len() - 1;
        if self.is_live() || progress.divergence.is_some() {
            return;
        }
        drop(progress);
        let (kind, reason) = match self.recorded.entered(step, nth) {
            Some(r) if r.state == state => return,
            Some(r) => (
                DivergenceKind::State,
                format!(
                    "entered `{state}` where the recorded run entered `{}`",
                    r.state
                ),
            ),
            None => (
                DivergenceKind::EndOfRecord,
                format!(
                    "the recorded run did not get here: it ended at step {}",
                    self.recorded.steps.last().map_or(0, |s| s.step)
                ),
            ),
        };
        self.diverge(
            Divergence {
                step,
                state: state.to_owned(),
                kind,
                reason,
            },
            StopLevel::Drain,
        );
    }

    /// Serves `request` from the record, or says why it cannot (the divergence, not yet kept).
    pub(crate) fn serve(
        &self,
        request: &ActionRequest<'_>,
        io: &mut ActionIo<'_, '_>,
    ) -> Result<io::Result<ActionOutcome>, Divergence> {
        let pending = request.pending;
        let key = super::input_sha256(request);
        let judge = is_judge(request);
        let mut progress = self.lock();
        let diverged = |kind, reason: String| Divergence {
            step: pending.step,
            state: pending.state.clone(),
            kind,
            reason,
        };
        if judge {
            let Some(call) = progress
                .judges
                .get_mut(&pending.step)
                .and_then(VecDeque::pop_front)
            else {
                return Err(diverged(
                    DivergenceKind::Judge,
                    "the recorded run did not call the llm judge here".to_owned(),
                ));
            };
            if call.state != pending.state || call.key != key {
                return Err(diverged(
                    DivergenceKind::Judge,
                    "the judge's prompt differs (its criteria, or the answer it judges)".to_owned(),
                ));
            }
            progress.saved.judge_calls += 1;
            progress
                .saved
                .add_agent(call.agent.as_ref(), call.duration_ms);
            drop(progress);
            let outcome = ActionOutcome {
                process: ended(Some(0), None, None, None, call.duration_ms),
                session_id: None,
                agent: call.agent,
            };
            return Ok(Ok(outcome));
        }
        let Some(attempt) = progress
            .actions
            .get_mut(&pending.step)
            .and_then(VecDeque::pop_front)
        else {
            return Err(diverged(
                DivergenceKind::EndOfRecord,
                format!(
                    "the recorded run has no result for step {} to reuse",
                    pending.step
                ),
            ));
        };
        if attempt.state != pending.state {
            return Err(diverged(
                DivergenceKind::State,
                format!(
                    "runs `{}` where the recorded run ran `{}`",
                    pending.state, attempt.state
                ),
            ));
        }
        if attempt.key != key && pending.kind == ActionKind::SubLoop {
            let reason = explain_call(
                self.source_def.as_ref(),
                &self.def,
                &pending.state,
                attempt.child_context.as_ref(),
                request.text,
            );
            return Err(diverged(DivergenceKind::Input, reason));
        }
        if attempt.key != key {
            let reason = explain_input(
                self.source_def.as_ref(),
                &self.def,
                &pending.state,
                attempt.prompt.as_deref(),
                request.text,
            );
            return Err(diverged(DivergenceKind::Input, reason));
        }
        progress.saved.actions += 1;
        progress.saved.action_ms += attempt.result.duration_ms;
        progress
            .saved
            .add_agent(attempt.result.agent.as_deref(), attempt.result.duration_ms);
        progress.reused_steps.insert(pending.step);
        drop(progress);
        Ok(replay_attempt(attempt, io))
    }
}

/// Whether a call is the `llm` judge's (the judge's calls carry `DLOOP_JUDGE=1`).
fn is_judge(request: &ActionRequest<'_>) -> bool {
    request.pending.kind == ActionKind::Prompt
        && request
            .env
            .iter()
            .any(|(k, v)| k == "DLOOP_JUDGE" && v == "1")
}

/// Writes a recorded attempt's output through `io` and returns its recorded end.
fn replay_attempt(attempt: Attempt, io: &mut ActionIo<'_, '_>) -> io::Result<ActionOutcome> {
    let result = attempt.result;
    if let Some(session_id) = &result.session_id {
        (io.note)(ActionNote::SessionStarted {
            session_id: session_id.clone(),
        });
    }
    for (stream, range) in split_streams(&attempt.output, result.stderr.as_bytes()) {
        io.chunk(stream, &attempt.output[range])?;
    }
    Ok(ActionOutcome {
        process: ended(
            result.exit_code,
            result.signal,
            result.timed_out,
            result.error.clone(),
            result.duration_ms,
        ),
        session_id: result.session_id.clone(),
        agent: result.agent.map(|a| *a),
    })
}

fn ended(
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: Option<dloop_core::event::ActionTimeout>,
    spawn_error: Option<String>,
    ms: u64,
) -> ProcessEnd {
    let status = match (code, signal) {
        (Some(code), _) => Some(std::process::ExitStatus::from_raw((code & 0xff) << 8)),
        (None, Some(signal)) => Some(std::process::ExitStatus::from_raw(signal & 0x7f)),
        (None, None) => None,
    };
    ProcessEnd {
        status,
        spawn_error,
        timed_out,
        stopped: false,
        duration: Duration::from_millis(ms),
    }
}

/// Which bytes of `output` to hand over as stderr so the replayed result's stderr tail equals
/// the recorded one: the recorded tail matched as a subsequence of the output from its end
/// (the stream interleaves both pipes and keeps no mark of which was which). When it does not
/// match (it was not valid UTF-8), everything is stdout.
fn split_streams(output: &[u8], stderr: &[u8]) -> Vec<(Stream, std::ops::Range<usize>)> {
    let mut is_err = vec![false; output.len()];
    let mut want = stderr.len();
    for (i, byte) in output.iter().enumerate().rev() {
        if want == 0 {
            break;
        }
        if *byte == stderr[want - 1] {
            is_err[i] = true;
            want -= 1;
        }
    }
    if want > 0 {
        is_err.iter_mut().for_each(|e| *e = false);
    }
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=output.len() {
        if i == output.len() || is_err[i] != is_err[start] {
            let stream = if is_err[start] {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            runs.push((stream, start..i));
            start = i;
        }
    }
    runs
}

/// An action runner that serves recorded results, and hands calls to `real` once live.
pub(crate) struct ReplayRunner {
    pub(crate) replayer: Arc<Replayer>,
    pub(crate) real: Arc<dyn ActionRunner>,
}

impl ActionRunner for ReplayRunner {
    fn run(
        &self,
        request: &ActionRequest<'_>,
        io: &mut ActionIo<'_, '_>,
    ) -> io::Result<ActionOutcome> {
        if !is_judge(request) && self.replayer.pause_for(request.pending.step) {
            return Ok(stopped());
        }
        if !self.replayer.is_live() {
            match self.replayer.serve(request, io) {
                Ok(outcome) => return outcome,
                Err(divergence) => {
                    if !self.replayer.diverge(divergence, StopLevel::Stop) {
                        return Ok(stopped());
                    }
                }
            }
        }
        self.replayer.lock().live_steps.insert(request.pending.step);
        self.real.run(request, io)
    }
}

/// The end of an action the replay stopped before it ran (nothing started).
pub(crate) fn stopped() -> ActionOutcome {
    ActionOutcome::from(ProcessEnd {
        status: None,
        spawn_error: None,
        timed_out: None,
        stopped: true,
        duration: Duration::ZERO,
    })
}

/// The project's agent runners, each wrapped in a [`ReplayRunner`].
pub(crate) struct ReplayAgents {
    pub(crate) replayer: Arc<Replayer>,
    pub(crate) real: Arc<dyn AgentRunners>,
}

impl AgentRunners for ReplayAgents {
    fn runner(&self, profile: &str) -> Option<Arc<dyn ActionRunner>> {
        let real = self.real.runner(profile)?;
        Some(Arc::new(ReplayRunner {
            replayer: Arc::clone(&self.replayer),
            real,
        }))
    }
    fn default_profile(&self) -> Option<String> {
        self.real.default_profile()
    }
    fn rate_limit(&self, profile: &str) -> Option<dloop_core::model::RateLimitPolicy> {
        self.real.rate_limit(profile)
    }
    fn limits(&self, profile: &str) -> AgentLimits {
        self.real.limits(profile)
    }
    fn can_resume(&self, profile: &str) -> bool {
        self.real.can_resume(profile)
    }
}

/// The session's clock: waits take no time while the replay follows the record.
pub(crate) struct ReplayClock {
    pub(crate) replayer: Arc<Replayer>,
    pub(crate) real: Arc<dyn Clock>,
}

impl Clock for ReplayClock {
    fn now(&self) -> Timestamp {
        self.real.now()
    }
    fn sleep(&self, duration: Duration, interrupted: &dyn Fn() -> bool) {
        if self.replayer.is_live() {
            self.real.sleep(duration, interrupted);
        }
    }
}

/// Watches the states the replay enters (a different state at a step is a divergence, found
/// before that state's action starts) and passes everything on to `inner`.
pub(crate) struct ReplayObserver<'o> {
    pub(crate) replayer: Arc<Replayer>,
    pub(crate) inner: &'o mut dyn RunObserver,
}

impl RunObserver for ReplayObserver<'_> {
    fn on_record(&mut self, record: &Record, state: &RunState) {
        if let Event::StateEntered {
            state: name, step, ..
        } = &record.event
        {
            self.replayer.entered(name, *step);
        }
        self.inner.on_record(record, state);
    }
    fn on_action_start(&mut self, pending: &dloop_core::state::PendingAction, state: &RunState) {
        self.inner.on_action_start(pending, state);
    }
    fn on_output(&mut self, stream: Stream, bytes: &[u8]) {
        self.inner.on_output(stream, bytes);
    }
    fn on_wait(&mut self, wait: Duration, why: &str) {
        if self.replayer.is_live() {
            self.inner.on_wait(wait, why);
        }
    }
    fn on_agent_activity(&mut self, activity: &crate::actions::AgentActivity) {
        self.inner.on_agent_activity(activity);
    }
    fn on_child_record(&mut self, depth: u32, record: &Record, state: &RunState) {
        // A live replay's real child (after the divergence).
        self.inner.on_child_record(depth, record, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(output: &[u8], runs: &[(Stream, std::ops::Range<usize>)], want: Stream) -> Vec<u8> {
        runs.iter()
            .filter(|(s, _)| *s == want)
            .flat_map(|(_, r)| output[r.clone()].to_vec())
            .collect()
    }

    #[test]
    fn stderr_is_found_as_a_subsequence_from_the_end() {
        let output = b"out 1\nerr A\nout 2\nerr B\n";
        let runs = split_streams(output, b"err A\nerr B\n");
        assert_eq!(join(output, &runs, Stream::Stderr), b"err A\nerr B\n");
        let all: Vec<u8> = runs
            .iter()
            .flat_map(|(_, r)| output[r.clone()].to_vec())
            .collect();
        assert_eq!(all, output, "every byte once, in order");
        let runs = split_streams(output, b"");
        assert_eq!(runs, vec![(Stream::Stdout, 0..output.len())]);
        let runs = split_streams(output, b"not there at all \xff");
        assert_eq!(join(output, &runs, Stream::Stderr), b"");
        assert!(split_streams(b"", b"").is_empty());
    }

    #[test]
    fn a_recorded_status_becomes_the_same_process_end() {
        let end = ended(Some(3), None, None, None, 12);
        assert_eq!(end.exit_code(), Some(3));
        assert_eq!(end.signal(), None);
        let end = ended(None, Some(9), None, None, 0);
        assert_eq!((end.exit_code(), end.signal()), (None, Some(9)));
        assert!(
            ended(None, None, None, Some("x".into()), 0)
                .status
                .is_none()
        );
    }
}
