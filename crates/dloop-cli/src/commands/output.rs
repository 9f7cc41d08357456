//! `dloop output`: a step's full output, also while the step runs, and live with `--follow`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use dloop_store::Store;
use serde::Serialize;

use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::project::Project;
use crate::render::json::to_pretty;
use crate::runs::{resolve_newest, store_error};
use crate::step_output::{self, OutputState, Outputs, StepOutput};
use crate::storage::Storage;

/// How often `--follow` looks for more output and for the step's end.
const POLL: Duration = Duration::from_millis(100);

/// Print a step's full output (stdout and stderr as they arrived)
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop output fix-tests                   the latest step's output of the loop's newest run
  dloop output fix-tests 3                 step 3's output
  dloop output fix-tests test -f           follow the `test` state's latest step while it runs")]
pub(crate) struct OutputArgs {
    /// The run: an id, a unique id prefix, or a loop name (its newest run)
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::run_ids))]
    pub(crate) run: String,
    /// The step: a step number, or a state name (its latest step); default: the latest step
    #[arg(value_name = "STEP")]
    pub(crate) step: Option<String>,
    /// Keep printing while the step runs; ends when the step ends
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// Write the bytes exactly as printed, control characters included (by default they are
    /// made visible when stdout is a terminal); for an agent step, the CLI's stream itself
    /// instead of the readable transcript
    #[arg(long)]
    pub(crate) raw: bool,
    /// Print where the output is (record and path) as JSON instead of the output
    #[arg(long, conflicts_with_all = ["follow", "raw"])]
    pub(crate) json: bool,
}

/// `output --json`.
#[derive(Debug, Serialize)]
struct OutputJson<'a> {
    run: &'a str,
    #[serde(flatten)]
    output: &'a StepOutput,
    /// The file's absolute path, when the output has one.
    file: Option<String>,
}

/// Prints a step's output.
pub(crate) fn cmd_output(ctx: &Ctx, args: OutputArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let id = resolve_newest(store, &args.run)?;
    let (mut outputs, mut next_seq) = read_outputs(store, &id, Outputs::default(), 1)?;
    let Some(found) = outputs.find(args.step.as_deref()).cloned() else {
        let what = match &args.step {
            Some(step) => format!("run {id} has no output of step `{step}`"),
            None => format!("run {id} has not started an action yet"),
        };
        return Err(CliError::new(ErrorKind::Usage, what)
            .with_hint(format!("`dloop logs {id}` shows the steps it ran")));
    };
    let run_dir = storage.local_dir(&id).map_err(|e| store_error(e, &id))?;
    let file = step_output::file_of(&run_dir, &found);
    if args.json {
        ctx.ui.print(&to_pretty(&OutputJson {
            run: &id,
            output: &found,
            file: file.as_ref().map(|f| f.display().to_string()),
        }))?;
        return Ok(Exit::Ok);
    }
    let agent = match (&found.profile, args.raw) {
        (Some(profile), false) => agent_base(ctx, &project, profile),
        _ => None,
    };
    let mut out = Sink {
        out: std::io::stdout().lock(),
        visible: !args.raw && std::io::stdout().is_terminal(),
        agent: agent.map(dloop_runtime::actions::agents::StreamReader::new),
        color: ctx.ui.color,
    };
    if let Some(text) = &found.in_log {
        out.write(text.as_bytes())?;
        return out.done();
    }
    let Some(start) = found.offset else {
        if let Some(file) = file {
            // A whole file of its own (a log from before the output stream).
            let (bytes, _) = step_output::read_span(&file, 0, None)
                .map_err(|e| CliError::io(format!("reading {}", file.display()), e))?;
            out.write(&bytes)?;
        }
        return out.done();
    };
    let read = |from: u64, to: Option<u64>| {
        store
            .read_output(&id, from, to)
            .map_err(|e| store_error(e, &id))
    };
    let mut current = found;
    let mut pos = start;
    loop {
        let (bytes, upto) = read(pos, current.end())?;
        out.write(&bytes)?;
        pos = upto;
        if current.status != OutputState::Open || !args.follow {
            return out.done();
        }
        // Liveness before the log: a runner that ends between the two reads leaves its last
        // records for the next pass, which then stops.
        let live = store.is_live(&id).map_err(|e| store_error(e, &id))?;
        (outputs, next_seq) = read_outputs(store, &id, outputs, next_seq)?;
        current = outputs
            .steps
            .iter()
            .rev()
            .find(|s| s.step == current.step && s.state == current.state)
            .cloned()
            .unwrap_or(current);
        if current.status == OutputState::Open && !live {
            let (bytes, _) = read(pos, None)?;
            out.write(&bytes)?;
            return out.done();
        }
        if current.status == OutputState::Open {
            std::thread::sleep(POLL);
        }
    }
}

/// Feeds the records from `from_seq` on into `outputs`; returns them and the next seq to read.
fn read_outputs(
    store: &dyn Store,
    id: &str,
    mut outputs: Outputs,
    from_seq: u64,
) -> Result<(Outputs, u64), CliError> {
    let mut next = from_seq;
    for record in store
        .records_from(id, from_seq)
        .map_err(|e| store_error(e, id))?
    {
        let record = record.map_err(|e| store_error(e, id))?;
        next = record.seq + 1;
        outputs.feed(&record);
    }
    Ok((outputs, next))
}

/// The CLI kind of an agent step's profile (the project's config, else the built-in names), to
/// read its stream as a transcript.
pub(crate) fn agent_base(
    ctx: &Ctx,
    project: &Project,
    profile: &str,
) -> Option<dloop_core::config::Base> {
    let from_config = crate::commands::session::agents(ctx, project)
        .ok()
        .and_then(|agents| agents.profile(profile).map(|p| p.base));
    from_config.or_else(|| dloop_core::config::Base::from_name(profile))
}

/// Writes output bytes, made visible for a terminal unless `--raw`; an agent step's stream is
/// read as it comes and printed as its transcript (what the agent wrote, each tool call, errors,
/// the end).
struct Sink<'o> {
    out: std::io::StdoutLock<'o>,
    visible: bool,
    agent: Option<dloop_runtime::actions::agents::StreamReader>,
    color: bool,
}

impl Sink<'_> {
    fn activity_lines(
        &mut self,
        activities: Vec<dloop_runtime::actions::AgentActivity>,
    ) -> Result<(), CliError> {
        for activity in activities {
            for line in crate::render::agent_view::lines(&activity, true, usize::MAX, self.color) {
                writeln!(self.out, "{line}")?;
            }
        }
        self.out.flush()?;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        if let Some(reader) = &mut self.agent {
            let mut activities = Vec::new();
            reader.feed(bytes, &mut |a| activities.push(a));
            return self.activity_lines(activities);
        }
        if self.visible {
            self.out.write_all(&step_output::for_terminal(bytes))?;
        } else {
            self.out.write_all(bytes)?;
        }
        self.out.flush()?;
        Ok(())
    }

    fn done(mut self) -> CmdResult {
        if let Some(reader) = self.agent.take() {
            let mut activities = Vec::new();
            reader.finish(&mut |a| activities.push(a));
            self.activity_lines(activities)?;
        }
        self.out.flush()?;
        Ok(Exit::Ok)
    }
}
