//! `dloop rewind RUN --to STEP`: the working tree back to its checkpoint after STEP, and the
//! run back to its state at the end of STEP, paused, so `resume` continues with step STEP+1.
//!
//! Order, and why: the run's claim is taken first (a live run is refused: its actions would be
//! writing the tree being restored); the tree is checked for changes that are not the run's
//! (the working tree must equal the run's last checkpoint, unless `force`); the files are
//! restored; only then the `run_rewound` record is appended. A crash between the restore and
//! the record leaves the run as it was with the files of STEP: rewinding again is harmless, and
//! a resume would charge the difference to no step (its session starts from the tree it finds).

use std::path::Path;

use dloop_core::RunState;
use dloop_core::event::Event;
use dloop_core::state::RunStatus;
use dloop_store::Store;

use crate::checkpoint::{GitCheckpoints, checkpoints, state_after_step};
use crate::driver::now;
use crate::error::RuntimeError;
use crate::git::Git;

/// What a rewind did.
#[derive(Debug, Clone)]
pub struct Rewound {
    /// The run's state now (paused, reason `rewound`).
    pub state: RunState,
    /// The tree the working tree now holds.
    pub tree: String,
    /// The work tree that was restored.
    pub work_tree: std::path::PathBuf,
}

/// Rewinds run `run_id` to the end of `step`. `runtime` is dloop's runtime folder (left out of
/// checkpoints), `run_dir` the run's local folder (its private index).
///
/// # Errors
/// The run is live or cancelled, the step has no checkpoint, the working tree has changes that
/// are not the run's (without `force`), its worktree is gone, or git or the store failed.
pub fn rewind_run(
    store: &dyn Store,
    run_id: &str,
    step: u64,
    force: bool,
    run_dir: &Path,
    runtime: &Path,
) -> Result<Rewound, RuntimeError> {
    let meta = store.read_meta(run_id)?;
    let mut run = store.open_run(run_id)?;
    let (mut state, _) = run.load_state()?;
    crate::reaper::end_leftover_action(run_id);
    if state.status == RunStatus::Cancelled {
        return Err(RuntimeError::Checkpoint(format!(
            "run {run_id} is cancelled; `dloop fork` starts a new run from one of its steps"
        )));
    }
    let records = run.records_from(1)?.collect::<Result<Vec<_>, _>>()?;
    let all = checkpoints(&records);
    let Some((at_step, Some(checkpoint))) = state_after_step(&records, step) else {
        let with: Vec<String> = all.iter().map(|c| c.step.to_string()).collect();
        return Err(RuntimeError::Checkpoint(format!(
            "run {run_id} has no checkpoint of step {step}{}",
            if with.is_empty() {
                " (it recorded none: checkpoints need a git repository)".to_owned()
            } else {
                format!("; steps with one: {}", with.join(", "))
            }
        )));
    };
    let work_tree = match &meta.worktree {
        Some(worktree) => crate::worktree::check(run_id, worktree)?,
        None => std::path::PathBuf::from(&meta.project_root),
    };
    let Some(hooks) = GitCheckpoints::open(&work_tree, run_dir, runtime) else {
        return Err(RuntimeError::Checkpoint(format!(
            "{} is not a git work tree (or DLOOP_CHECKPOINTS=off): nothing to restore with",
            work_tree.display()
        )));
    };
    let current = hooks.snapshot()?;
    let latest = all.last().map(|c| c.checkpoint.tree.clone());
    if !force && latest.as_deref() != Some(current.as_str()) {
        let changed = latest
            .as_deref()
            .and_then(|l| {
                Git::new(&work_tree)
                    .run(["diff", "--name-only", "--no-renames", l, &current])
                    .ok()
            })
            .unwrap_or_default();
        return Err(RuntimeError::Checkpoint(format!(
            "the working tree {} has changes that are not run {run_id}'s{}; commit or stash \
             them, or give --force to overwrite them",
            work_tree.display(),
            if changed.is_empty() {
                String::new()
            } else {
                format!(": {}", changed.lines().collect::<Vec<_>>().join(", "))
            }
        )));
    }
    if Git::new(&work_tree)
        .run(["cat-file", "-e", &checkpoint.tree])
        .is_err()
    {
        return Err(RuntimeError::Checkpoint(format!(
            "the checkpoint of step {step} (tree {}) is no longer in the repository (`git gc` \
             prunes unreferenced trees after its expiry)",
            checkpoint.tree
        )));
    }
    hooks.restore(&checkpoint.tree)?;
    let event = Event::RunRewound {
        step,
        tree: checkpoint.tree.clone(),
        state: Box::new(at_step),
    };
    for record in run.append(&[event], now())? {
        state.apply(&record);
    }
    run.save_snapshot(&state)?;
    Ok(Rewound {
        state,
        tree: checkpoint.tree,
        work_tree,
    })
}
