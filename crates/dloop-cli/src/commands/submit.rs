//! `dloop submit`: enqueue a run of a loop for workers (`dloop worker`) on a PostgreSQL store.
//! The run is created whole (its definition, context and first record kept with it) and
//! `queued`; the first worker to claim it starts it in its own checkout of the project.
//!
//! Every loop the run's `loop:` states reach is kept with it (its `sub-loops.json` bundle,
//! written before the run is queued): workers start children from that copy, never from their
//! own checkout. A sub-loop run is never queued on its own (`--resume CHILD` is refused): it
//! runs only under its parent, which `--resume PARENT` hands back.

use clap::Args;
use dloop_core::HumanDuration;
use dloop_runtime::runs::{StartRequest, submit_run};

use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::project::Project;
use crate::storage::Storage;

/// Enqueue a run of LOOP for workers (needs a PostgreSQL store)
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop submit fix-tests --store postgres://db.internal/dloop
  dloop submit review -c branch=main --max-steps 20      with DLOOP_STORE set
  dloop submit --resume fix-tests-20261121T103207-a1b2    hand a paused run back to the workers")]
pub(crate) struct SubmitArgs {
    /// The loop: a name from `.loops/`, or a path to a .yaml/.yml file (with --resume: a run)
    #[arg(value_name = "LOOP", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::loop_names))]
    pub(crate) loop_arg: String,
    /// Sets the loop's `input_key` context value (default key: `input`)
    #[arg(value_name = "INPUT")]
    pub(crate) input: Option<String>,
    /// Sets a context value (repeatable): -c KEY=VALUE
    #[arg(short = 'c', long = "context", value_name = "K=V")]
    pub(crate) context: Vec<String>,
    /// State executions before the run pauses (default: the loop's, else 100)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_steps: Option<u64>,
    /// Wall clock for the whole run, across resumes (e.g. 30m, 2h)
    #[arg(long, value_name = "DUR")]
    pub(crate) timeout: Option<HumanDuration>,
    /// Hand the paused run LOOP names back to the workers instead of starting a new one
    #[arg(long, conflicts_with_all = ["input", "context", "max_steps", "timeout"])]
    pub(crate) resume: bool,
    /// Print the run id only (for scripts)
    #[arg(long)]
    pub(crate) json: bool,
}

/// Enqueues a run.
pub(crate) fn cmd_submit(ctx: &Ctx, args: SubmitArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let storage = Storage::for_project(&project)?;
    let Some(pg) = storage.pg() else {
        return Err(
            CliError::usage("dloop submit needs a PostgreSQL store").with_hint(
                "give --store postgres://..., set DLOOP_STORE, or `store:` in .loops/config.yaml",
            ),
        );
    };
    if args.resume {
        let run_id = crate::runs::resolve(storage.store(), &args.loop_arg, "paused", &|info| {
            info.is_resumable()
        })?;
        refuse_child(storage.store(), &run_id)?;
        let queued = dloop_store_pg::queue::requeue(pg, &run_id)
            .map_err(|e| crate::runs::store_error(e, &run_id))?;
        if !queued {
            return Err(CliError::new(
                ErrorKind::Refused,
                format!("run {run_id} cannot be queued"),
            ));
        }
        return print_id(ctx, &run_id, args.json);
    }
    let (loaded, context) = crate::commands::run::load_for_start(
        ctx,
        &args.loop_arg,
        args.input.as_deref(),
        &args.context,
        Some(&project),
    )?;
    let def = &loaded
        .parsed
        .as_ref()
        .expect("load_for_start returns a parsed loop")
        .def;
    let request = StartRequest {
        def,
        definition_text: &loaded.source,
        loop_name: &loaded.file.name,
        loop_path: None,
        context,
        argv: std::env::args().collect(),
        max_steps: args.max_steps.unwrap_or_else(|| def.limits.max_steps()),
        timeout_ms: args
            .timeout
            .or(def.limits.timeout)
            .map(HumanDuration::as_millis),
        delay_ms: def.delay.map(HumanDuration::as_millis),
        scope: None,
        options: Default::default(),
    };
    let bundle = crate::subloops::bundle_for(&project, &ctx.cwd, def)?;
    let meta = submit_run(
        &request,
        &bundle,
        &project.root,
        dloop_runtime::driver::now(),
        &mut |meta, bundle| match bundle {
            Some(bytes) => dloop_store_pg::queue::submit_with(
                pg,
                meta,
                &[(dloop_runtime::subloop::BUNDLE_BLOB, bytes)],
            ),
            None => dloop_store_pg::queue::submit(pg, meta),
        },
    )
    .map_err(|e| crate::commands::session::runtime_error(e, None))?;
    print_id(ctx, &meta.id, args.json)
}

/// Refuses to queue a sub-loop run: a worker would drive it as a run of its own while its
/// parent's resume continues it too. Its parent is the run to hand back.
fn refuse_child(store: &dyn dloop_store::Store, run_id: &str) -> Result<(), CliError> {
    let (state, _) = store
        .load_state(run_id)
        .map_err(|e| crate::runs::store_error(e, run_id))?;
    match state.parent {
        Some(parent) => Err(CliError::new(
            ErrorKind::Refused,
            format!(
                "run {run_id} is a sub-loop run of {}: it runs only under its parent",
                parent.run_id
            ),
        )
        .with_hint(format!(
            "`dloop submit --resume {}` hands the parent (and so this run) back to the workers",
            parent.run_id
        ))),
        None => Ok(()),
    }
}

fn print_id(ctx: &Ctx, run_id: &str, json: bool) -> CmdResult {
    if json {
        ctx.ui.print(&format!(
            "{}\n",
            serde_json::json!({ "id": run_id, "queued": true })
        ))?;
    } else {
        ctx.ui.print(&format!("{run_id}\n"))?;
        ctx.ui.status(&format!(
            "queued run {run_id}; a `dloop worker` will start it\n"
        ));
    }
    Ok(Exit::Ok)
}
