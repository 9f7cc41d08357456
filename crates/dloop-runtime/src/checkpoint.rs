//! Step checkpoints: what each action changed in the working tree, as git trees.
//!
//! After every action that finishes, [`GitCheckpoints`] stages the whole working tree into the
//! run's own index file (`checkpoint.index` in the run's local folder, through
//! `GIT_INDEX_FILE`) and writes it as a tree object; the tree goes into the step's
//! `action_finished` record ([`Checkpoint`]), in the batch that record is written with, so a
//! checkpoint costs no extra fsync. The user's index, HEAD, branches and stash are never
//! touched. `dloop diff` compares two trees; `dloop rewind` checks a tree out into the working
//! tree through the same private index.
//!
//! Invariants and limits:
//! - a checkpoint's `base` is the tree before that action: the previous checkpoint of the same
//!   session, or the working tree as the session found it, so a step's diff holds only what
//!   happened while its action ran (edits made while the run was paused are not charged to it);
//! - files git ignores (`.gitignore`) are not in checkpoints, and dloop's runtime folder is
//!   always left out;
//! - the private index starts as a copy of the repository's index, so a step re-hashes only
//!   the files whose stat data changed (the cost is measured per step in `cost_us`);
//! - trees are objects no ref holds: `git gc` may prune them after its expiry (two weeks by
//!   default); a pruned tree is reported, never guessed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use dloop_core::event::{Checkpoint, Event};
use dloop_core::{Record, RunState};

use crate::error::RuntimeError;
use crate::git::{Git, GitError};

/// Called by the driver after an action ends, before its `action_finished` record is written.
pub trait StepHook: Send + Sync {
    /// What the action of `step` (in `state`) changed; `None` when nothing can be said (the
    /// failure is the hook's to report: a checkpoint never fails a step).
    fn after_action(&self, state: &str, step: u64) -> Option<Checkpoint>;
}

/// The name of a run's private index in its local folder.
pub const INDEX_FILE: &str = "checkpoint.index";

/// Checkpoints of one run's working tree.
#[derive(Debug)]
pub struct GitCheckpoints {
    git: Git,
    /// Pathspecs that leave dloop's runtime folder out.
    excludes: Vec<String>,
    /// The tree the next action starts from.
    last: Mutex<Option<String>>,
}

impl GitCheckpoints {
    /// Checkpoints of `work_tree` for the run whose local folder is `run_dir`, leaving out
    /// `runtime` (dloop's folder) when it is inside the work tree. `None` outside a git work
    /// tree, or when `DLOOP_CHECKPOINTS=off`. Takes the session's first tree at once.
    pub fn open(work_tree: &Path, run_dir: &Path, runtime: &Path) -> Option<Self> {
        if std::env::var("DLOOP_CHECKPOINTS").is_ok_and(|v| v == "off" || v == "0") {
            return None;
        }
        let top = Git::toplevel(work_tree)?;
        std::fs::create_dir_all(run_dir).ok()?;
        let index = run_dir.join(INDEX_FILE);
        let plain = Git::new(&top);
        if !index.exists() {
            // A copy of the repository's index holds the stat data of every tracked file, so
            // the first snapshot hashes only what changed instead of the whole tree.
            if let Ok(real) = plain.git_path("index") {
                let _ = std::fs::copy(real, &index);
            }
        }
        // An ignored runtime folder is left out by git already (and naming it in a pathspec
        // makes `git add` fail); one that is not ignored is excluded by name.
        let excludes = relative_to(&top, runtime)
            .filter(|rel| !plain.succeeds(["check-ignore", "-q", rel.as_str()]))
            .map(|rel| vec![format!(":(exclude){rel}")])
            .unwrap_or_default();
        let hooks = Self {
            git: plain.with_index(index),
            excludes,
            last: Mutex::new(None),
        };
        let first = hooks.snapshot().ok()?;
        *hooks.last.lock().expect("not poisoned") = Some(first);
        Some(hooks)
    }

    /// The working tree as a tree object, now.
    ///
    /// # Errors
    /// git failed.
    pub fn snapshot(&self) -> Result<String, GitError> {
        let mut args = vec!["add", "-A", "--", "."];
        args.extend(self.excludes.iter().map(String::as_str));
        self.git.run(&args)?;
        self.git.run(["write-tree"])
    }

    /// Puts the working tree to `target`: files that differ are rewritten, files `target` does
    /// not have are deleted (ignored files stay). Goes through the private index.
    ///
    /// # Errors
    /// git failed.
    pub fn restore(&self, target: &str) -> Result<(), GitError> {
        let now = self.snapshot()?;
        self.git.run(["read-tree", "-m", "-u", &now, target])?;
        *self.last.lock().expect("not poisoned") = Some(target.to_owned());
        Ok(())
    }

    /// The git of the work tree (with the user's index).
    pub fn repo(&self) -> Git {
        Git::new(self.git.dir())
    }
}

impl StepHook for GitCheckpoints {
    fn after_action(&self, _state: &str, _step: u64) -> Option<Checkpoint> {
        let started = Instant::now();
        let tree = self.snapshot().ok()?;
        let mut last = self.last.lock().expect("not poisoned");
        let base = last.replace(tree.clone()).unwrap_or_else(|| tree.clone());
        Some(Checkpoint {
            tree,
            base,
            cost_us: started.elapsed().as_micros() as u64,
        })
    }
}

/// `path` relative to `top`, when it is inside it (for a pathspec).
fn relative_to(top: &Path, path: &Path) -> Option<String> {
    let top = top.canonicalize().ok()?;
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let rel = path.strip_prefix(&top).ok()?;
    (!rel.as_os_str().is_empty()).then(|| rel.display().to_string())
}

/// One step's checkpoint as the log has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCheckpoint {
    /// The step.
    pub step: u64,
    /// Its state.
    pub state: String,
    /// The trees.
    pub checkpoint: Checkpoint,
}

/// Every checkpoint of a run, in log order (a step re-run after a rate limit appears once per
/// attempt; the last is the one that counts).
pub fn checkpoints<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<StepCheckpoint> {
    records
        .into_iter()
        .filter_map(|record| match &record.event {
            Event::ActionFinished {
                state,
                step,
                result,
                ..
            } => result.checkpoint.as_ref().map(|c| StepCheckpoint {
                step: *step,
                state: state.clone(),
                checkpoint: (**c).clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The trees to compare for `dloop diff`: one step's (before and after its action), or the
/// whole run's (before its first checkpointed action and after its last).
///
/// # Errors
/// [`RuntimeError::Checkpoint`] when the step (or the run) has no checkpoint.
pub fn diff_range(
    run_id: &str,
    all: &[StepCheckpoint],
    step: Option<u64>,
) -> Result<(String, String), RuntimeError> {
    match step {
        Some(step) => all
            .iter()
            .rev()
            .find(|c| c.step == step)
            .map(|c| (c.checkpoint.base.clone(), c.checkpoint.tree.clone()))
            .ok_or_else(|| no_checkpoint(run_id, Some(step), all)),
        None => match (all.first(), all.last()) {
            (Some(first), Some(last)) => {
                Ok((first.checkpoint.base.clone(), last.checkpoint.tree.clone()))
            }
            _ => Err(no_checkpoint(run_id, None, all)),
        },
    }
}

fn no_checkpoint(run_id: &str, step: Option<u64>, all: &[StepCheckpoint]) -> RuntimeError {
    let steps: Vec<String> = all.iter().map(|c| c.step.to_string()).collect();
    let what = step.map_or_else(|| "no step".to_owned(), |s| format!("step {s}"));
    RuntimeError::Checkpoint(if steps.is_empty() {
        format!(
            "run {run_id} has no checkpoints: {what} recorded one (checkpoints need a git \
             repository, and are off with DLOOP_CHECKPOINTS=off)"
        )
    } else {
        format!(
            "run {run_id}: {what} has no checkpoint; steps with one: {}",
            steps.join(", ")
        )
    })
}

/// The run's state at the end of `step`, folded from its records: everything up to the last
/// `action_finished` of that step, then the records that route out of it (verdict,
/// transition), and nothing after (the next step's entry, a pause or an end that followed).
/// The last finished action counts, so after a rewind and resume the step's newer run is the
/// one found. `None` when the log has no finished action of `step`.
pub fn state_after_step(records: &[Record], step: u64) -> Option<(RunState, Option<Checkpoint>)> {
    let last = records.iter().rposition(
        |record| matches!(&record.event, Event::ActionFinished { step: s, .. } if *s == step),
    )?;
    let mut state = RunState::from_records(&records[..=last]);
    let checkpoint = match &records[last].event {
        Event::ActionFinished { result, .. } => result.checkpoint.as_deref().cloned(),
        _ => None,
    };
    for record in &records[last + 1..] {
        let routes = matches!(
            record.event,
            Event::Evaluated { .. }
                | Event::Transitioned { .. }
                | Event::RetryScheduled { .. }
                | Event::HandoffDetected { .. }
        );
        if !routes {
            break;
        }
        state.apply(record);
    }
    Some((state, checkpoint))
}

/// Where a run's private index lives.
pub fn index_path(run_dir: &Path) -> PathBuf {
    run_dir.join(INDEX_FILE)
}
