//! What `run` and `resume` share: context flags, signal handling, the observer, and turning
//! the end of a session into output and an exit code.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use dloop_core::state::RunStatus;
use dloop_runtime::driver::SessionOptions;
use dloop_runtime::runs::RunEnd;
use dloop_runtime::{RuntimeError, RuntimeErrorKind};
use dloop_store::Store;

use crate::commands::Ctx;
use crate::detach::ChildFlags;
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::project::Project;
use crate::render::json::to_pretty;
use crate::render::progress::Progress;
use crate::render::run_json::RunJson;
use crate::runs::{load_info, store_kind};

/// Spend budget flags `run` and `resume` share: the run's budget over the loop's `limits`.
#[derive(Debug, clap::Args)]
pub(crate) struct BudgetFlags {
    /// The run's budget in US dollars of agent and judge calls (over the loop's
    /// `limits.max_cost_usd`; on resume, raises it)
    #[arg(long, value_name = "USD", value_parser = non_negative_usd)]
    pub(crate) max_cost_usd: Option<f64>,
    /// The run's budget in input + output tokens (over the loop's `limits.max_tokens`)
    #[arg(long, value_name = "N")]
    pub(crate) max_tokens: Option<u64>,
    /// The run's budget of time in agent and judge calls, e.g. 30m (over the loop's
    /// `limits.max_agent_time`)
    #[arg(long, value_name = "DUR")]
    pub(crate) max_agent_time: Option<dloop_core::HumanDuration>,
}

impl BudgetFlags {
    /// The budget these flags set (unset fields leave the loop's).
    pub(crate) fn budget(&self) -> dloop_core::budget::Budget {
        dloop_core::budget::Budget {
            max_cost_usd: self.max_cost_usd,
            max_tokens: self.max_tokens,
            max_agent_time_ms: self
                .max_agent_time
                .map(dloop_core::HumanDuration::as_millis),
        }
    }
}

fn non_negative_usd(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "`{text}` is not an amount of US dollars (e.g. 2.50)"
        )),
    }
}

/// Flags `run` and `resume` share: scope locks, the wait queue, background runs, notify.
#[derive(Debug, clap::Args)]
pub(crate) struct SessionFlags {
    /// Wait for a scope another run holds (first come, first served) instead of refusing
    #[arg(long)]
    pub(crate) queue: bool,
    /// With --queue: give up waiting after DUR (the run pauses with reason `queue_timeout`;
    /// resume waits again)
    #[arg(long, value_name = "DUR", requires = "queue")]
    pub(crate) queue_timeout: Option<dloop_core::HumanDuration>,
    /// Take no scope lock: run even while other runs work on the same paths
    #[arg(long, conflicts_with = "queue")]
    pub(crate) no_lock: bool,
    /// Run detached in the background: print the run id once the run has started and return;
    /// its console goes to the run folder's console.log
    #[arg(short = 'b', long)]
    pub(crate) background: bool,
    /// Run CMD with bash when this session ends or pauses, with DLOOP_RUN_ID, DLOOP_STATUS,
    /// DLOOP_REASON and DLOOP_LOOP in its environment (a failure is only a warning)
    #[arg(long, value_name = "CMD")]
    pub(crate) notify: Option<String>,
    #[command(flatten)]
    pub(crate) child: ChildFlags,
}

impl SessionFlags {
    /// Whether this process should detach a child and return (`-b`, not the child itself).
    pub(crate) fn detaches(&self) -> bool {
        self.background && self.child.ready_fd.is_none()
    }

    /// How the run takes its scope; `None` with `--no-lock`.
    pub(crate) fn scope_request(
        &self,
        storage: &crate::storage::Storage,
    ) -> Option<dloop_runtime::scope::ScopeRequest> {
        (!self.no_lock).then(|| dloop_runtime::scope::ScopeRequest {
            registry_dir: storage.scopes_dir(),
            queue: self.queue,
            queue_timeout: self.queue_timeout.map(|d| d.0),
        })
    }
}

/// Parses `-c KEY=VALUE` flags.
pub(crate) fn context_pairs(pairs: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut context = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(CliError::usage(format!("--context `{pair}` has no `=`"))
                .with_hint("write -c KEY=VALUE"));
        };
        let valid = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(
                CliError::usage(format!("--context key `{key}` is not a valid name"))
                    .with_hint("keys are letters, digits, `_` and `-`"),
            );
        }
        context.insert(key.to_owned(), value.to_owned());
    }
    Ok(context)
}

/// Session options with signal handlers installed, and the progress printer.
pub(crate) fn prepare(
    ctx: &Ctx,
    project: &Project,
    json: bool,
    verbose: bool,
) -> Result<(SessionOptions, Progress), CliError> {
    let mut options = SessionOptions::new(project.root.clone());
    // Step checkpoints whenever the run works in a git work tree (DLOOP_CHECKPOINTS=off: none).
    options.checkpoints = Some(crate::storage::Storage::runtime_dir_of(project));
    if let Some(ms) = std::env::var("DLOOP_KILL_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.kill_grace = std::time::Duration::from_millis(ms);
    }
    if let Some(bytes) = std::env::var("DLOOP_CAPTURE_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.capture_limit = bytes;
    }
    options.agents = Arc::new(agents(ctx, project)?);
    options.sub_loops = Some(Arc::new(crate::subloops::ProjectLoops::new(
        project,
        ctx.cwd.clone(),
    )?));
    dloop_runtime::signals::install(Arc::clone(&options.stop), Arc::clone(&options.signals))
        .map_err(|e| CliError::io("installing signal handlers", e))?;
    crate::storage::watch_stops(&options.stop);
    let live = !json && std::io::stderr().is_terminal();
    let progress = Progress::new(
        ctx.ui.color_stderr,
        live,
        verbose && !json,
        ctx.ui.quiet,
        Arc::clone(&options.signals),
    );
    Ok((options, progress))
}

/// The project's agent runner profiles: `.loops/config.yaml` over the built-ins. An invalid
/// config is shown like an invalid loop (each problem with its line) and refuses the run.
pub(crate) fn agents(
    ctx: &Ctx,
    project: &Project,
) -> Result<dloop_runtime::actions::agents::Agents, CliError> {
    use dloop_runtime::error::ConfigError;
    dloop_runtime::actions::agents::Agents::load(&project.root).map_err(|err| match err {
        ConfigError::Invalid {
            path,
            text,
            diagnostics,
        } => {
            let file = crate::load::display_path(&path, &ctx.cwd);
            for diag in &diagnostics {
                ctx.ui
                    .warn(&dloop_core::diagnostic::render(diag, &file, &text));
            }
            CliError::new(ErrorKind::Invalid, format!("{file} is not a valid config")).with_hint(
                "fix the problems above; `dloop init` documents every key in a fresh config.yaml",
            )
        }
        ConfigError::Read { path, source } => {
            CliError::io(format!("reading {}", path.display()), source)
        }
    })
}

/// The exit status of a session that ended with `status`.
pub(crate) fn exit_for(end: &RunEnd) -> Exit {
    match end.status {
        RunStatus::Completed => Exit::Ok,
        RunStatus::Failed | RunStatus::Cancelled => Exit::Failed,
        RunStatus::TimedOut => Exit::TimedOut,
        RunStatus::Paused
            if end.state.pause_reason == Some(dloop_core::event::PauseReason::Interrupted) =>
        {
            Exit::Interrupted
        }
        RunStatus::Paused | RunStatus::Running => Exit::Paused,
    }
}

/// Prints the end of a session (a summary on stderr, or the run's JSON on stdout).
pub(crate) fn finish(
    ctx: &Ctx,
    store: &dyn Store,
    end: &RunEnd,
    json: bool,
) -> Result<Exit, CliError> {
    let exit = exit_for(end);
    if json {
        let info = load_info(store, &end.run_id)?;
        ctx.ui.print(&to_pretty(&RunJson::from_info(&info)))?;
        return Ok(exit);
    }
    let state = &end.state;
    let took = crate::render::run_view::duration(state.elapsed_ms());
    let steps = format!(
        "{} step{}",
        state.step,
        if state.step == 1 { "" } else { "s" }
    );
    let line = match end.status {
        RunStatus::Completed => format!("completed in {steps} ({took})"),
        RunStatus::Failed => format!(
            "failed after {steps} ({took}): {}",
            state
                .message
                .as_deref()
                .or(state.last_error.as_deref())
                .unwrap_or("no detail")
        ),
        RunStatus::TimedOut => format!(
            "timed out after {steps} ({took}); `dloop resume {} --timeout DUR` with a larger DUR continues",
            end.run_id
        ),
        RunStatus::Paused | RunStatus::Running => format!(
            "paused ({}) after {steps} ({took}){}; `dloop resume {}` continues",
            state.pause_reason.map_or("stopped", |r| r.as_str()),
            state
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default(),
            end.run_id
        ),
        RunStatus::Cancelled => format!("cancelled after {steps}"),
    };
    ctx.ui.status(&format!("{line}\n"));
    if end.status == RunStatus::Failed {
        ctx.ui.status(&failing_output(ctx, end));
    }
    Ok(exit)
}

/// For a failed run: the last lines of the last step's output (stderr first), and the command
/// that prints all of it. Empty when that step printed nothing.
fn failing_output(ctx: &Ctx, end: &RunEnd) -> String {
    let Some(prev) = &end.state.prev else {
        return String::new();
    };
    let lines = crate::render::progress::tail_lines(&prev.result.stderr, &prev.result.excerpt, 5);
    if lines.is_empty() {
        return String::new();
    }
    let bar = crate::render::Paint::Dim.apply(ctx.ui.color_stderr, "│");
    let mut out = format!(
        "last output of step {} (`{}`){}:\n",
        prev.step,
        prev.state,
        if prev.result.stderr.trim().is_empty() {
            ""
        } else {
            ", stderr"
        }
    );
    for line in lines {
        out.push_str(&format!("  {bar} {line}\n"));
    }
    out.push_str(&format!(
        "all of it: dloop output {} {}\n",
        end.run_id, prev.step
    ));
    out
}

/// A runtime error as a CLI error with the right kind. Every kind is named: a new one does
/// not compile until someone chooses its exit code.
pub(crate) fn runtime_error(err: RuntimeError, run: Option<&str>) -> CliError {
    let (kind, hint) = match err.kind() {
        RuntimeErrorKind::Store(kind) => store_kind(kind, run.unwrap_or("RUN")),
        RuntimeErrorKind::Refused => (ErrorKind::Refused, None),
        RuntimeErrorKind::Invalid => (ErrorKind::Invalid, None),
        RuntimeErrorKind::Usage => (ErrorKind::Usage, None),
        RuntimeErrorKind::Corrupt => (ErrorKind::Corrupt, None),
        RuntimeErrorKind::Io => (ErrorKind::Io, None),
        RuntimeErrorKind::Internal => (ErrorKind::Internal, None),
    };
    CliError {
        kind,
        source: anyhow::Error::new(err),
        hint,
    }
}
