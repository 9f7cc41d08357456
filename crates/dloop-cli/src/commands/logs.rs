//! `dloop logs`: a run's event timeline, one readable line per record, or the records as JSON
//! Lines. Streams the log in constant memory; `--follow` keeps reading while the run is live;
//! `--output` puts each action's output between its start and its end, as it arrives.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use clap::builder::PossibleValuesParser;
use dloop_core::Record;
use dloop_core::event::Event;
use dloop_store::Store;

use crate::commands::{CmdResult, Ctx};
use crate::error::CliError;
use crate::exit::Exit;
use crate::project::Project;
use crate::render::timeline::{self, EVENT_TYPES};
use crate::runs::{resolve_newest, store_error};
use crate::step_output::{self, Outputs};
use crate::storage::Storage;

/// `--output`: where the actions' outputs are, and how far they were printed.
#[derive(Default)]
struct OutputPrinter {
    tracker: Outputs,
    printed_to: u64,
}

/// How often `--follow` looks for new records.
const POLL: Duration = Duration::from_millis(100);

/// Print a run's event timeline (readable, or raw JSON Lines)
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop logs fix-tests                     the newest run's timeline
  dloop logs fix-tests -f --output         follow it live, with each action's output
  dloop logs 3f2a --json --type action_finished | jq .exit_code")]
pub(crate) struct LogsArgs {
    /// The run: an id, a unique id prefix, or a loop name (its newest run)
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::run_ids))]
    pub(crate) run: String,
    /// Keep printing new records until the run is no longer live
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// Only records of this type (repeatable)
    #[arg(long = "type", value_name = "T", value_parser = PossibleValuesParser::new(EVENT_TYPES))]
    pub(crate) types: Vec<String>,
    /// Print each record as one JSON object per line (as stored, without `crc` and `_more`)
    #[arg(long)]
    pub(crate) json: bool,
    /// Interleave each action's output with the records (with --json: `{"type":"output",...}`
    /// lines)
    #[arg(long)]
    pub(crate) output: bool,
}

/// Prints the timeline.
pub(crate) fn cmd_logs(ctx: &Ctx, args: LogsArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let id = resolve_newest(store, &args.run)?;
    let mut printer = Printer {
        out: std::io::stdout().lock(),
        args: &args,
        color: ctx.ui.color,
        outputs: args.output.then(OutputPrinter::default),
        store,
        id: &id,
    };
    if !args.follow {
        for record in store
            .records_from(&id, 1)
            .map_err(|e| store_error(e, &id))?
        {
            printer.print(&record.map_err(|e| store_error(e, &id))?)?;
        }
        // An action still running (or whose runner died) shows what it printed so far.
        printer.catch_up_output()?;
        printer.out.flush()?;
        return Ok(Exit::Ok);
    }
    follow(store, &id, &mut printer)?;
    Ok(Exit::Ok)
}

/// Prints records until the run is not live and the log has nothing more. Liveness is read
/// before each poll, so every record written before the claim was released is printed by the
/// poll that sees it released.
fn follow(store: &dyn Store, id: &str, printer: &mut Printer<'_, '_>) -> Result<(), CliError> {
    let mut follow = store.follow(id, 0).map_err(|e| store_error(e, id))?;
    loop {
        let was_live = store.is_live(id).map_err(|e| store_error(e, id))?;
        for record in follow.poll().map_err(|e| store_error(e, id))? {
            printer.print(&record)?;
        }
        printer.catch_up_output()?;
        printer.out.flush()?;
        if !was_live {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

/// Writes records in the chosen form, keeping those `--type` asks for.
struct Printer<'a, 'o> {
    out: std::io::StdoutLock<'o>,
    args: &'a LogsArgs,
    color: bool,
    outputs: Option<OutputPrinter>,
    store: &'a dyn Store,
    id: &'a str,
}

impl Printer<'_, '_> {
    fn print(&mut self, record: &Record) -> std::io::Result<()> {
        if let Some(outputs) = &mut self.outputs {
            outputs.tracker.feed(record);
            if matches!(
                record.event,
                Event::ActionFinished { .. } | Event::ActionInterrupted { .. }
            ) {
                // What the action printed comes before the record of its end.
                self.catch_up_output()?;
            }
        }
        self.print_record(record)
    }

    /// Prints the output of the latest action that was not printed yet (to its end when it
    /// ended, else to the end of the stream so far).
    fn catch_up_output(&mut self) -> std::io::Result<()> {
        let Some(outputs) = &mut self.outputs else {
            return Ok(());
        };
        let Some(step) = outputs.tracker.steps.last().cloned() else {
            return Ok(());
        };
        let Some(start) = step.offset else {
            return Ok(());
        };
        let from = start.max(outputs.printed_to);
        let (bytes, upto) = self
            .store
            .read_output(self.id, from, step.end())
            .map_err(std::io::Error::other)?;
        outputs.printed_to = upto;
        if bytes.is_empty() {
            return Ok(());
        }
        if self.args.json {
            let line = serde_json::json!({
                "type": "output",
                "state": step.state,
                "step": step.step,
                "offset": from,
                "text": String::from_utf8_lossy(&bytes),
            });
            return writeln!(self.out, "{line}");
        }
        let bar = crate::render::Paint::Dim.apply(self.color, "│");
        let text = step_output::for_terminal(&bytes);
        for line in String::from_utf8_lossy(&text).lines() {
            writeln!(self.out, "{:>21}{bar} {line}", "")?;
        }
        Ok(())
    }

    fn print_record(&mut self, record: &Record) -> std::io::Result<()> {
        let kind = record.event.type_name();
        if !self.args.types.is_empty() && !self.args.types.iter().any(|t| t == kind) {
            return Ok(());
        }
        let line = if self.args.json {
            timeline::json_line(record)
        } else {
            timeline::human_line(record, self.color)
        };
        self.out.write_all(line.as_bytes())
    }
}
