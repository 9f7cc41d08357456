//! `dloop replay RUN [LOOP] [--live]`: re-execute a loop definition (the run's own, or LOOP)
//! against a recorded run, reusing its recorded results; report the path, the verdicts and the
//! cost avoided, and stop at the first divergence (`--live`: go on for real from there).
//!
//! Where the replay lives: without `--live`, in a scratch store removed when the command ends
//! (nothing remains among the project's runs, so replay is safe in CI); with `--live`, it is a
//! real run of the project's store, resumable like any. The source run is only read.
//!
//! Exit status: 0 when the replay follows the record to the recorded end; 5 when it diverges
//! (without `--live`); with `--live`, the live run's status as `dloop run` reports it.

use clap::Args;
use dloop_runtime::observer::Silent;
use dloop_runtime::replay::{ReplayRequest, load, replay_run};
use dloop_runtime::runs::{RunEnd, parse_definition};

use crate::commands::session::{self, runtime_error};
use crate::commands::{CmdResult, Ctx};
use crate::exit::Exit;
use crate::project::{Project, resolve_loop};
use crate::render::replay::{ReplayJson, ReplayView};
use crate::runs::resolve_newest;
use crate::storage::Storage;

/// Re-execute a loop against a run's recorded results; stop at the first divergence
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop replay fix-tests                     the newest fix-tests run against its own definition
  dloop replay fix-tests .loops/edited.yaml  the same run against an edited loop file
  dloop replay fix-tests edited --live       go on for real from the first step that differs

Exit status: 0 the replay reached the recorded end; 5 it diverged; with --live, as `dloop run`.")]
pub(crate) struct ReplayArgs {
    /// The recorded run: an id, a unique id prefix, or a loop name (its newest run)
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::run_ids))]
    pub(crate) run: String,
    /// The definition to re-execute: a loop name from `.loops/` or a path (default: the one the
    /// run started with)
    #[arg(value_name = "LOOP")]
    pub(crate) loop_arg: Option<String>,
    /// From the first divergence on, run for real: the replay becomes a run of the project
    #[arg(long)]
    pub(crate) live: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub(crate) json: bool,
    /// With --live: show every line each live action prints as it arrives
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,
}

/// Replays a run.
pub(crate) fn cmd_replay(ctx: &Ctx, args: ReplayArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let source = resolve_newest(store, &args.run)?;
    let recorded = load(store, &source).map_err(|e| runtime_error(e, Some(&source)))?;
    let (text, loop_path, against) = match &args.loop_arg {
        Some(arg) => {
            let file = resolve_loop(arg, &ctx.cwd, Some(&project))?;
            let path = std::fs::canonicalize(ctx.cwd.join(&file.path))
                .ok()
                .map(|p| p.display().to_string());
            let shown = crate::load::display_path(&ctx.cwd.join(&file.path), &ctx.cwd);
            let text = crate::commands::resume::load_for_reload(
                ctx,
                &project,
                file,
                "nothing was replayed",
            )?;
            (text, path, Some(shown))
        }
        None => (
            recorded.meta.definition.clone(),
            recorded.meta.loop_path.clone(),
            None,
        ),
    };
    let def = parse_definition(&source, &text).map_err(|e| runtime_error(e, Some(&source)))?;
    let request = ReplayRequest {
        def: &def,
        definition_text: &text,
        loop_path,
        live: args.live,
        argv: std::env::args().collect(),
        scope: args.live.then(|| dloop_runtime::scope::ScopeRequest {
            registry_dir: storage.scopes_dir(),
            queue: false,
            queue_timeout: None,
        }),
    };
    let (options, mut progress) = session::prepare(ctx, &project, args.json, args.verbose)?;
    let report = if args.live {
        let local_dir = |id: &str| storage.local_dir(id);
        replay_run(
            recorded,
            store,
            &local_dir,
            &request,
            options,
            &mut progress,
        )
    } else {
        drop(progress);
        let scratch = storage.scratch()?;
        let local_dir = |id: &str| scratch.local_dir(id);
        replay_run(
            recorded,
            scratch.store(),
            &local_dir,
            &request,
            options,
            &mut Silent,
        )
    }
    .map_err(|e| runtime_error(e, Some(&source)))?;
    let view = ReplayView {
        report: &report,
        against: against.as_deref(),
    };
    if args.json {
        ctx.ui
            .print(&crate::render::json::to_pretty(&ReplayJson::from(&view)))?;
    } else {
        ctx.ui.print(&view.human(ctx.ui.color))?;
    }
    if !args.live {
        if report.stopped {
            // A stop (Ctrl-C, SIGTERM, SIGHUP): not a verdict on the loop. Nothing remains to
            // resume, but the exit says how it ended, as `dloop run`'s would.
            return Ok(
                if report.state.pause_reason == Some(dloop_core::event::PauseReason::Interrupted) {
                    Exit::Interrupted
                } else {
                    Exit::Paused
                },
            );
        }
        return Ok(if report.matched() {
            Exit::Ok
        } else {
            Exit::Diverged
        });
    }
    let end = RunEnd {
        run_id: report.run_id.clone(),
        status: report.state.status,
        state: report.state.clone(),
    };
    // The live run's own end, as `dloop run` tells it (stderr: stdout holds the report).
    session::finish(ctx, store, &end, false)
}
