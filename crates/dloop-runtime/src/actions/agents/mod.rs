//! `prompt:` actions: the runner profiles of `.loops/config.yaml` ([`Agents`]) and the runner
//! that drives one agent CLI headless ([`AgentRunner`]).
//!
//! An invocation: the command line is built from the profile and the call ([`argv`]), the
//! prompt goes to stdin, and the CLI runs under [`crate::process::run_process_until`] like a
//! shell action (own process group, timeouts, stop). Every chunk is written to the step's
//! output first; stdout is then split into lines and read by the CLI's parser (`claude.rs`,
//! `codex.rs`, `gemini.rs`, `opencode.rs`; `command.rs` for any program), which reports
//! [`AgentActivity`] to watchers as it goes. The session id is passed to
//! [`ActionIo::note`] as soon as the stream reveals it (and again if it changes, after a
//! Claude `conversation_reset`), so an action killed mid-stream is continued in its session.
//! When the process ends, [`classify`] decides the outcome from the terminal event first,
//! then the exit status, then stderr.
//!
//! Invariants:
//! - memory does not grow with the stream: lines are parsed as they complete and dropped
//!   (a line longer than [`MAX_LINE`] is cut into pieces that do not parse, so it is skipped),
//!   stderr keeps its last [`STDERR_TAIL`] bytes, a command's final text its last 256 KiB;
//! - the turn cap is dloop's own: when the stream shows more turns than `max_turns`, the
//!   process group is ended ([`Flow::End`]) and the outcome is a failure saying so, unless
//!   the CLI had already reported success;
//! - token counts are this invocation's own: Codex reports a thread's running total, so the
//!   last total of each thread is kept in the run's scratch folder
//!   (`agent-usage/codex-<thread>.json`) and the step records the difference.

mod argv;
mod classify;
mod claude;
mod codex;
mod command;
mod gemini;
mod opencode;
mod stream;

use std::io;
use std::path::Path;
use std::sync::Arc;

use dloop_core::config::{AgentConfig, Base, PromptMode, ResolvedProfile, parse_config};
use dloop_core::diagnostic::Diagnostic;
use dloop_core::event::{AgentOutcome, AgentReport, TokenUsage};
use indexmap::IndexMap;

pub use argv::{Invocation, invocation};
use classify::{Patterns, ProcessFacts, Verdict};
use stream::{StreamFacts, StreamParser, shorten};

use super::lines::LineSplitter;
use super::output::Stream;
use super::{
    ActionIo, ActionNote, ActionOutcome, ActionRequest, ActionRunner, AgentActivity, AgentCall,
};
use crate::error::ConfigError;
use crate::process::{self, Flow, ProcessSpec};

/// The longest stdout line parsed (8 MiB); longer lines (a huge tool result) are skipped.
pub const MAX_LINE: usize = 8 * 1024 * 1024;
/// How much of stderr is kept for classifying a failure (its end).
pub const STDERR_TAIL: usize = 16 * 1024;
/// The longest summary in [`AgentActivity::Finished`].
const SUMMARY: usize = 200;

/// The runner profiles of a project, each with its runner.
#[derive(Debug, Clone)]
pub struct Agents {
    config: AgentConfig,
    runners: IndexMap<String, Arc<AgentRunner>>,
}

impl Default for Agents {
    /// The built-in profiles (a project without `.loops/config.yaml`).
    fn default() -> Self {
        Self::from_config(&AgentConfig::default())
    }
}

impl Agents {
    /// The runners of `config`'s profiles.
    pub fn from_config(config: &AgentConfig) -> Self {
        let runners = config
            .profiles()
            .map(|p| (p.name.clone(), Arc::new(AgentRunner::new(p.clone()))))
            .collect();
        Self {
            config: config.clone(),
            runners,
        }
    }

    /// The runners of a config file's text.
    ///
    /// # Errors
    /// The config's problems ([`parse_config`]).
    pub fn from_yaml(bytes: &[u8]) -> Result<Self, Vec<Diagnostic>> {
        parse_config(bytes).map(|c| Self::from_config(&c))
    }

    /// The runners of the project at `root`: its `.loops/config.yaml`, or the built-ins when
    /// there is none.
    ///
    /// # Errors
    /// The file exists but cannot be read, or is not a valid config.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        let path = root.join(dloop_core::config::CONFIG_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::from_yaml(&bytes).map_err(|diagnostics| ConfigError::Invalid {
            path,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            diagnostics,
        })
    }

    /// The runner of profile `profile`.
    pub fn runner(&self, profile: &str) -> Option<Arc<dyn ActionRunner>> {
        self.runners
            .get(profile)
            .map(|r| Arc::clone(r) as Arc<dyn ActionRunner>)
    }

    /// Profile `name` (timeouts, `max_turns`, the rate-limit ladder).
    pub fn profile(&self, name: &str) -> Option<&ResolvedProfile> {
        self.config.profile(name)
    }

    /// The profile of `prompt:` states that name none.
    pub fn default_runner(&self) -> &str {
        self.config.default_runner()
    }

    /// Every profile's name: the built-ins, then the config's.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.runners.keys().map(String::as_str)
    }

    /// The config the runners were built from.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }
}

/// Runs `prompt:` actions with one runner profile.
#[derive(Debug)]
pub struct AgentRunner {
    profile: ResolvedProfile,
    /// Compiled on the first classification: every session builds a runner per profile, and
    /// most never run one (compiling them all up front cost a shell-only run megabytes).
    patterns: std::sync::OnceLock<Patterns>,
}

impl AgentRunner {
    /// A runner for `profile`.
    pub fn new(profile: ResolvedProfile) -> Self {
        Self {
            profile,
            patterns: std::sync::OnceLock::new(),
        }
    }

    fn patterns(&self) -> &Patterns {
        self.patterns
            .get_or_init(|| Patterns::new(&self.profile.rate_limit_patterns))
    }

    /// Its profile.
    pub fn profile(&self) -> &ResolvedProfile {
        &self.profile
    }
}

impl ActionRunner for AgentRunner {
    fn run(
        &self,
        request: &ActionRequest<'_>,
        io: &mut ActionIo<'_, '_>,
    ) -> io::Result<ActionOutcome> {
        let profile = &self.profile;
        let call = request.agent.unwrap_or(AgentCall {
            profile: &profile.name,
            model: None,
            extra_args: &[],
            resume_session: None,
            max_turns: None,
        });
        let step = request.pending.step;
        let prompt_file = (profile.base == Base::Command && profile.prompt == PromptMode::File)
            .then(|| request.scratch.join(format!("prompt-{step}.txt")));
        if let Some(path) = &prompt_file {
            super::write_scratch_file(path, request.text)?;
        }
        let inv = invocation(
            profile,
            &call,
            request.text,
            request.cwd,
            prompt_file.as_deref(),
        );
        let mut env = request.env.to_vec();
        env.extend(inv.env);
        let spec = ProcessSpec {
            argv: inv.argv,
            env,
            cwd: request.cwd.to_owned(),
            stdin: inv.stdin,
            idempotency_key: request.pending.idempotency_key.clone(),
            limits: request.limits.clone(),
        };
        let max_turns = call.max_turns.or(profile.max_turns);
        let mut parser = parser_for(profile.base);
        let mut splitter = LineSplitter::new(MAX_LINE);
        let mut stderr = Tail::new(STDERR_TAIL);
        let mut noted: Option<String> = None;
        let mut cut_at: Option<u64> = None;
        let stop = io.stop;
        let end = process::run_process_until(&spec, stop, &mut |stream, bytes| {
            io.chunk(stream, bytes)?;
            match stream {
                Stream::Stderr => stderr.push(bytes),
                Stream::Stdout => {
                    // The session id is noted after every line, not every chunk: a chunk can
                    // hold a claude `conversation_reset`, and both ids must reach the log.
                    let activity = &mut *io.activity;
                    let note = &mut *io.note;
                    splitter.feed(bytes, &mut |line| {
                        parser.line(line, &mut |a| activity(&a));
                        note_session(parser.facts(), &mut noted, note);
                    });
                }
            }
            let turns = parser.facts().turns;
            if cut_at.is_none() && max_turns.is_some_and(|max| turns > max) {
                cut_at = Some(turns);
                return Ok(Flow::End);
            }
            Ok(Flow::Continue)
        });
        if let Some(path) = &prompt_file {
            let _ = std::fs::remove_file(path);
        }
        let end = end?;
        {
            let activity = &mut *io.activity;
            splitter.finish(&mut |line| parser.line(line, &mut |a| activity(&a)));
        }
        parser.finish();
        note_session(parser.facts(), &mut noted, io.note);
        let facts = parser.facts();

        let now = classify::now();
        let process_facts = ProcessFacts::from(&end);
        let mut verdict = if let Some(error) = &end.spawn_error {
            // The program could not be started (not installed, not executable).
            Verdict {
                outcome: AgentOutcome::Failure,
                message: Some(error.clone()),
                resets_at: None,
            }
        } else if profile.base == Base::Command {
            let mut text = stderr.text();
            if let Some(out) = &facts.final_text {
                let tail = &out[out.len().saturating_sub(STDERR_TAIL)..];
                text = format!(
                    "{}\n{text}",
                    tail.trim_start_matches(|c: char| !c.is_ascii())
                );
            }
            classify::classify_command(process_facts, &text, self.patterns(), now)
        } else {
            classify::classify(
                profile.base,
                facts,
                process_facts,
                &stderr.text(),
                self.patterns(),
                now,
            )
        };
        if let (Some(turns), Some(max)) = (cut_at, max_turns)
            && !matches!(
                verdict.outcome,
                AgentOutcome::Success | AgentOutcome::Interrupted
            )
        {
            verdict = Verdict {
                outcome: AgentOutcome::Failure,
                message: Some(format!(
                    "ended by dloop after {turns} turns: max_turns is {max}"
                )),
                resets_at: None,
            };
        }
        let tokens = if profile.base == Base::Codex {
            codex_delta(request.scratch, facts)?
        } else {
            facts.tokens
        };
        let report = AgentReport {
            profile: profile.name.clone(),
            outcome: verdict.outcome,
            final_text: facts.final_text.clone(),
            model: facts.model.clone(),
            turns: facts
                .reported_turns
                .or((facts.turns > 0).then_some(facts.turns)),
            tokens,
            cost_usd: facts.cost_usd,
            message: verdict.message,
            resets_at: verdict.resets_at,
            continued: inv.resumed,
        };
        let summary = report
            .final_text
            .as_deref()
            .filter(|_| report.outcome == AgentOutcome::Success)
            .or(report.message.as_deref())
            .unwrap_or_default();
        (io.activity)(&AgentActivity::Finished {
            outcome: report.outcome,
            summary: shorten(summary, SUMMARY),
        });
        let session_id = facts.session_id.clone().or_else(|| {
            inv.resumed
                .then(|| call.resume_session.map(str::to_owned))
                .flatten()
        });
        Ok(ActionOutcome {
            process: end,
            session_id,
            agent: Some(report),
        })
    }
}

/// The parser of `base`'s stream.
fn parser_for(base: Base) -> Box<dyn StreamParser> {
    match base {
        Base::Claude => Box::<claude::ClaudeParser>::default(),
        Base::Codex => Box::<codex::CodexParser>::default(),
        Base::Gemini => Box::<gemini::GeminiParser>::default(),
        Base::Opencode => Box::<opencode::OpencodeParser>::default(),
        Base::Command => Box::<command::CommandParser>::default(),
    }
}

/// Notes the session id when the stream first names it, and again when it changes.
fn note_session(facts: &StreamFacts, noted: &mut Option<String>, note: &mut dyn FnMut(ActionNote)) {
    if let Some(id) = &facts.session_id
        && noted.as_ref() != Some(id)
    {
        *noted = Some(id.clone());
        note(ActionNote::SessionStarted {
            session_id: id.clone(),
        });
    }
}

/// Reads an agent CLI's stream from bytes at hand, as the runner reads stdout: for
/// `dloop output` (a stream kept in a run) and benchmarks. Memory stays flat however much is
/// fed (see the module invariants).
pub struct StreamReader {
    base: Base,
    parser: Box<dyn StreamParser>,
    splitter: LineSplitter,
}

/// What a whole stream said, from [`StreamReader::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSummary {
    /// The latest session id.
    pub session_id: Option<String>,
    /// The model that answered.
    pub model: Option<String>,
    /// The final answer.
    pub final_text: Option<String>,
    /// Turns (reported, else counted).
    pub turns: Option<u64>,
    /// Token use as the stream reports it (for Codex, the thread's running total).
    pub tokens: TokenUsage,
    /// Cost in US dollars.
    pub cost_usd: Option<f64>,
    /// The outcome, when the stream holds the CLI's terminal event (`command`: never).
    pub outcome: Option<AgentOutcome>,
    /// The CLI's error message, for a failure.
    pub message: Option<String>,
}

impl StreamReader {
    /// A reader of `base`'s stream.
    pub fn new(base: Base) -> Self {
        Self {
            base,
            parser: parser_for(base),
            splitter: LineSplitter::new(MAX_LINE),
        }
    }

    /// Reads a chunk, reporting what it shows to `activity`.
    pub fn feed(&mut self, bytes: &[u8], activity: &mut dyn FnMut(AgentActivity)) {
        let parser = &mut self.parser;
        self.splitter
            .feed(bytes, &mut |line| parser.line(line, activity));
    }

    /// Ends the stream; reports [`AgentActivity::Finished`] when it holds the terminal event.
    pub fn finish(mut self, activity: &mut dyn FnMut(AgentActivity)) -> StreamSummary {
        let parser = &mut self.parser;
        self.splitter
            .finish(&mut |line| parser.line(line, activity));
        parser.finish();
        let facts = parser.facts();
        let verdict = (self.base != Base::Command && facts.terminal.is_some()).then(|| {
            classify::classify(
                self.base,
                facts,
                ProcessFacts::default(),
                "",
                &Patterns::new(&[]),
                classify::now(),
            )
        });
        if let Some(verdict) = &verdict {
            let summary = match verdict.outcome {
                AgentOutcome::Success => facts.final_text.as_deref(),
                _ => verdict.message.as_deref(),
            };
            activity(AgentActivity::Finished {
                outcome: verdict.outcome,
                summary: shorten(summary.unwrap_or_default(), SUMMARY),
            });
        }
        StreamSummary {
            session_id: facts.session_id.clone(),
            model: facts.model.clone(),
            final_text: facts.final_text.clone(),
            turns: facts
                .reported_turns
                .or((facts.turns > 0).then_some(facts.turns)),
            tokens: facts.tokens,
            cost_usd: facts.cost_usd,
            outcome: verdict.as_ref().map(|v| v.outcome),
            message: verdict.and_then(|v| v.message),
        }
    }
}

/// What an agent did, read back from a stream kept in a run (for `dloop output`): the same
/// activities watchers saw live, ending with [`AgentActivity::Finished`] when the stream holds
/// the CLI's terminal event. `base` is the profile's base (`claude`, `codex`, `gemini`,
/// `opencode`, `command`); an unknown one gives nothing. Lines that are not the CLI's JSON
/// (stderr interleaved in the kept stream) are skipped.
pub fn transcript(base: &str, stream: &[u8]) -> Vec<AgentActivity> {
    let Some(base) = Base::from_name(base) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut reader = StreamReader::new(base);
    reader.feed(stream, &mut |a| out.push(a));
    reader.finish(&mut |a| out.push(a));
    out
}

/// The property the fuzz target `agent_streams` and the stream proptest check: reading a stream
/// fed in any chunks (cut at `cuts`, offsets into `bytes`) gives the same activities and the same
/// summary as reading it whole, and never panics, whatever the bytes.
///
/// # Panics
/// When the property does not hold (that is the finding).
pub fn assert_chunking_invariant(base: Base, bytes: &[u8], cuts: &[usize]) {
    let read = |chunks: &[&[u8]]| {
        let mut activities = Vec::new();
        let mut reader = StreamReader::new(base);
        for chunk in chunks {
            reader.feed(chunk, &mut |a| activities.push(a));
        }
        let summary = reader.finish(&mut |a| activities.push(a));
        (activities, summary)
    };
    let whole = read(&[bytes]);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points {
        chunks.push(&bytes[start..point]);
        start = point;
    }
    chunks.push(&bytes[start..]);
    let chunked = read(&chunks);
    assert_eq!(whole, chunked, "{base:?}: the chunks changed what was read");
}

/// This invocation's tokens from a Codex thread's running total: the total minus what the
/// thread's previous invocation in this run reported (kept in the scratch folder), which is
/// then replaced by this total. A thread is known by its id, whether dloop resumed it or the
/// stream reports a thread seen before (a profile's own `args` can continue one, e.g.
/// `resume --last`); a total below the recorded one is no continuation of it and counts whole.
/// A fresh thread starts from zero. Without a `turn.completed` (a failed or killed turn)
/// Codex reports nothing, and the step records nothing; the next completed turn of the thread
/// then carries that turn's use.
fn codex_delta(scratch: &Path, facts: &StreamFacts) -> io::Result<TokenUsage> {
    let (Some(thread), Some(_)) = (&facts.session_id, facts.reported_turns) else {
        return Ok(TokenUsage::default());
    };
    let safe: String = thread
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = scratch
        .join("agent-usage")
        .join(format!("codex-{safe}.json"));
    let recorded: TokenUsage = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => TokenUsage::default(),
        Err(e) => return Err(e),
    };
    let total = facts.tokens;
    let continues = total.input >= recorded.input
        && total.output >= recorded.output
        && total.cached >= recorded.cached
        && total.cache_write >= recorded.cache_write;
    let previous = if continues {
        recorded
    } else {
        TokenUsage::default()
    };
    let json = serde_json::to_vec(&total).map_err(io::Error::other)?;
    super::write_scratch_file(&path, &json)?;
    Ok(TokenUsage {
        input: total.input.saturating_sub(previous.input),
        output: total.output.saturating_sub(previous.output),
        cached: total.cached.saturating_sub(previous.cached),
        cache_write: total.cache_write.saturating_sub(previous.cache_write),
    })
}

/// The last bytes of a stream.
struct Tail {
    bytes: Vec<u8>,
    keep: usize,
}

impl Tail {
    fn new(keep: usize) -> Self {
        Self {
            bytes: Vec::new(),
            keep,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        // Trim in halves: amortized O(1) per byte.
        if self.bytes.len() > 2 * self.keep {
            self.bytes.drain(..self.bytes.len() - self.keep);
        }
    }

    fn text(&self) -> String {
        let start = self.bytes.len().saturating_sub(self.keep);
        String::from_utf8_lossy(&self.bytes[start..]).into_owned()
    }
}
