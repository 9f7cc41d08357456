//! `dloop run`: start a run of a loop and drive it in the foreground.

use std::collections::BTreeMap;

use clap::Args;
use dloop_core::HumanDuration;
use dloop_runtime::runs::{RunOptions, StartRequest, start_run};

use crate::commands::session::{self, context_pairs};
use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::load;
use crate::project::{Project, resolve_loop};
use crate::render::human;
use crate::storage::Storage;

/// Start a run of LOOP and drive it until it ends, pauses or is stopped
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop run fix-tests                      run .loops/fix-tests.yaml in the foreground
  dloop run fix-tests \"cargo test\" -v      set its input and show every line the actions print
  dloop run ./loops/review.yaml -c branch=main --max-steps 20
  dloop run fix-tests --dry-run --json     the plan, with the context filled in; nothing runs")]
pub(crate) struct RunArgs {
    /// The loop: a name from `.loops/`, or a path to a .yaml/.yml file
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
    /// Pause between steps (e.g. 5s)
    #[arg(long, value_name = "DUR")]
    pub(crate) delay: Option<HumanDuration>,
    /// Print the plan and the resolved context, and run nothing
    #[arg(long, conflicts_with = "background")]
    pub(crate) dry_run: bool,
    /// Print the run as JSON (the `inspect --json` shape) on stdout when the session ends
    #[arg(long)]
    pub(crate) json: bool,
    /// Show every line each action prints as it arrives (indented under the step lines)
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,
    /// Judge prompt states that name no evaluator by their agent's outcome (its exit status)
    /// instead of asking the `llm` judge
    #[arg(long)]
    pub(crate) no_llm: bool,
    #[command(flatten)]
    pub(crate) budget: session::BudgetFlags,
    /// Work in a new git worktree on branch `dloop/<run-id>` (in .loops/.dloop/worktrees/); the
    /// run's log and ${run.dir} stay in this repository
    #[arg(long)]
    pub(crate) worktree: bool,
    /// With --worktree: the commit the run's branch starts at (default: HEAD)
    #[arg(long, value_name = "REF", requires = "worktree")]
    pub(crate) branch_from: Option<String>,
    /// Set by `dloop parallel` on its workers' runs: the `<parallel-id>/<task>` they belong
    /// to, kept in run.json's argv so a coordinator that died can find them
    #[arg(long, value_name = "MARK", hide = true, requires = "worktree")]
    pub(crate) parallel_task: Option<String>,
    #[command(flatten)]
    pub(crate) session: session::SessionFlags,
}

/// Starts a run.
pub(crate) fn cmd_run(ctx: &Ctx, args: RunArgs) -> CmdResult {
    let project = Project::discover(&ctx.cwd);
    if args.session.detaches() {
        // The child checks everything and says what is wrong; we relay it.
        let project = project.unwrap_or(Project {
            root: ctx.cwd.clone(),
        });
        return crate::detach::spawn(ctx, &Storage::for_project(&project)?, "run");
    }
    let (loaded, context) = load_for_start(
        ctx,
        &args.loop_arg,
        args.input.as_deref(),
        &args.context,
        project.as_ref(),
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
        loop_path: std::fs::canonicalize(ctx.cwd.join(&loaded.file.path))
            .ok()
            .map(|p| p.display().to_string()),
        context,
        argv: std::env::args().collect(),
        max_steps: args.max_steps.unwrap_or_else(|| def.limits.max_steps()),
        timeout_ms: args
            .timeout
            .or(def.limits.timeout)
            .map(HumanDuration::as_millis),
        delay_ms: args.delay.or(def.delay).map(HumanDuration::as_millis),
        scope: None,
        options: RunOptions {
            no_llm: args.no_llm,
            budget: args.budget.budget(),
        },
    };
    if args.dry_run {
        let plan = crate::commands::plan::Plan::new(&loaded.file.name, def, &request);
        if args.json {
            ctx.ui.print(&crate::render::json::to_pretty(&plan))?;
        } else {
            ctx.ui.print(&plan.text())?;
        }
        return Ok(crate::exit::Exit::Ok);
    }
    if let Some(project) = &project {
        note_resumable(ctx, project, &loaded.file.name);
    }
    let project = project.unwrap_or(Project {
        root: ctx.cwd.clone(),
    });
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let request = StartRequest {
        scope: args.session.scope_request(&storage),
        ..request
    };
    let (mut options, mut progress) = session::prepare(ctx, &project, args.json, args.verbose)?;
    options.worktree = args
        .worktree
        .then(|| dloop_runtime::worktree::WorktreeRequest {
            dir: storage.worktrees_dir(),
            branch_from: args.branch_from.clone(),
        });
    let ready = crate::detach::Ready::from_flags(&args.session.child);
    let mut observer = crate::detach::Announce::new(&mut progress, ready, &storage);
    let local_dir = |id: &str| storage.local_dir(id);
    let end = start_run(store, &local_dir, &request, options, &mut observer)
        .map_err(|e| session::runtime_error(e, None))?;
    drop(observer);
    drop(progress);
    if let Ok(dloop_store::RunMeta {
        worktree: Some(worktree),
        ..
    }) = store.read_meta(&end.run_id)
    {
        ctx.ui.status(&format!(
            "worktree: {} (branch {})\n",
            worktree.path, worktree.branch
        ));
    }
    crate::notify::after_session(ctx, args.session.notify.as_deref(), &project.root, &end);
    session::finish(ctx, store, &end, args.json)
}

/// Loads LOOP for a new run (`run`, `submit`): the file resolved, validated (its problems shown
/// and refused), and the context a run starts with (the loop's, `-c` flags, INPUT), with every
/// `required` key present.
pub(crate) fn load_for_start(
    ctx: &Ctx,
    loop_arg: &str,
    input: Option<&str>,
    context_flags: &[String],
    project: Option<&Project>,
) -> Result<(load::LoadedLoop, BTreeMap<String, String>), CliError> {
    let file = resolve_loop(loop_arg, &ctx.cwd, project)?;
    let loaded = load::load_checked(file, &ctx.cwd, project);
    let Some(parsed) = loaded.parsed.as_ref().filter(|_| loaded.is_valid()) else {
        ctx.ui
            .status(&human::diagnostics(&loaded, ctx.ui.color_stderr));
        return Err(CliError::new(
            ErrorKind::Invalid,
            format!("{} is not a valid loop", loaded.display),
        )
        .with_hint(format!(
            "`dloop validate {}` lists every problem",
            loaded.display
        )));
    };
    let def = &parsed.def;
    let mut context: BTreeMap<String, String> = dloop_core::model::context_strings(&def.context);
    let given = context_pairs(context_flags)?;
    warn_unread(
        ctx,
        &loaded.source,
        &loaded.file.name,
        &given,
        input.map(|_| def.input_key()),
    );
    context.extend(given);
    if let Some(input) = input {
        context.insert(def.input_key().to_owned(), input.to_owned());
    }
    let missing: Vec<&str> = def
        .required
        .iter()
        .filter(|key| context.get(key.as_str()).is_none_or(|v| v.is_empty()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let hint = missing
            .iter()
            .map(|key| {
                if *key == def.input_key() {
                    format!("give INPUT or -c {key}=VALUE")
                } else {
                    format!("-c {key}=VALUE")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(CliError::usage(format!(
            "loop `{}` needs context {}: missing {}",
            loaded.file.name,
            if missing.len() == 1 { "key" } else { "keys" },
            missing
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_hint(hint));
    }
    Ok((loaded, context))
}

/// Warns about `-c` keys (and an INPUT) the loop never reads: no `${context.KEY}` anywhere in its
/// file. A typo in a key would otherwise pass silently and the run use the default.
fn warn_unread(
    ctx: &Ctx,
    source: &str,
    loop_name: &str,
    given: &BTreeMap<String, String>,
    input_key: Option<&str>,
) {
    use dloop_core::interpolate::{Namespace, references};
    let read: std::collections::BTreeSet<String> = references(source)
        .into_iter()
        .filter(|r| r.namespace == Namespace::Context)
        .filter_map(|r| r.path.first().cloned())
        .collect();
    for key in given.keys() {
        if !read.contains(key) {
            ctx.ui.warn(&format!(
                "warning: loop `{loop_name}` never reads context key `{key}` (-c {key}=...)\n"
            ));
        }
    }
    if let Some(key) = input_key
        && !read.contains(key)
    {
        ctx.ui.warn(&format!(
            "warning: loop `{loop_name}` never reads its input (context key `{key}`)\n"
        ));
    }
}

/// Says when the loop already has a run that could be resumed, so runs do not pile up by
/// accident. Reading the runs is best effort: a failure here never stops the new run.
fn note_resumable(ctx: &Ctx, project: &Project, loop_name: &str) {
    let Ok(storage) = crate::storage::Storage::for_project(project) else {
        return;
    };
    let Ok(ids) = crate::runs::run_ids(storage.store()) else {
        return;
    };
    let resumable: Vec<String> = ids
        .iter()
        .filter(|id| id.loop_name() == loop_name)
        .filter_map(|id| crate::runs::load_summary(storage.store(), id.as_str()).ok())
        .filter(|info| info.is_resumable())
        .map(|info| info.id)
        .collect();
    if let Some(last) = resumable.last() {
        ctx.ui.status(&format!(
            "note: loop `{loop_name}` has {} resumable run{} ({}); `dloop resume {last}` continues it instead of starting anew\n",
            resumable.len(),
            if resumable.len() == 1 { "" } else { "s" },
            resumable.join(", ")
        ));
    }
}
