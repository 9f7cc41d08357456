//! Bringing a finished worker's branch back to the target: gate, rebase, fast-forward (or
//! push), one worker at a time.
//!
//! The protocol, and why each step is where it is:
//! 1. An exclusive `flock` on `parallel/integrate.lock` for the whole integration: two
//!    coordinators of one repository never move the target at once.
//! 2. A rebase left half done by a killed coordinator is aborted (the branch is back where it
//!    was), then what the run left uncommitted in its worktree is committed on its branch, so
//!    nothing it wrote is lost.
//! 3. The gate runs in the worktree; a failure blocks the worker (worktree and branch kept).
//! 4. The branch is rebased onto the target's current commit; a conflict aborts the rebase and
//!    blocks the worker, naming the files.
//! 5. The intent (the rebased commit, and the target commit it sits on) is saved durably
//!    *before* the ref moves. A coordinator resumed after a kill checks whether the target
//!    holds that commit: if it does, the worker is integrated and is not integrated again.
//! 6. The target moves only forward: `merge --ff-only` in the worktree that has it checked out
//!    (so that checkout follows), else `update-ref` with the old value (compare-and-swap), else
//!    `push` without force. If the target moved meanwhile, back to 4 (a few times).
//!
//! Nothing is force-pushed, no commit is dropped, and a blocked worker keeps its worktree and
//! branch for a person (`dloop parallel retry TASK` after a fix).

use std::fs::File;
use std::path::Path;

use dloop_store::crash_point;

use super::state::{Integrate, Intent, ParallelState, WorkerStatus};
use crate::error::RuntimeError;
use crate::git::Git;

/// Rebase-and-update attempts when the target keeps moving.
const ATTEMPTS: usize = 5;

/// The repository the workers' branches come back to.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The main work tree's top.
    pub main: std::path::PathBuf,
    /// `parallel/`: where the integration lock is.
    pub parallel_dir: std::path::PathBuf,
}

/// What became of one integration.
enum Step {
    Done(Option<String>),
    Blocked(String),
}

/// Integrates worker `index` (status `integrating`), saving the state through `save` at every
/// point a crash must find. The worker ends `completed` or `blocked`.
///
/// # Errors
/// dloop's own failures (saving the state, the lock); git's are a blocked worker.
pub fn integrate(
    repo: &Repo,
    state: &mut ParallelState,
    index: usize,
    now: &dyn Fn() -> String,
    save: &mut dyn FnMut(&ParallelState) -> Result<(), RuntimeError>,
) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(&repo.parallel_dir).map_err(|source| RuntimeError::Io {
        op: "create",
        path: repo.parallel_dir.clone(),
        source,
    })?;
    let lock_path = repo.parallel_dir.join("integrate.lock");
    let lock = File::create(&lock_path).map_err(|source| RuntimeError::Io {
        op: "create",
        path: lock_path.clone(),
        source,
    })?;
    lock.lock().map_err(|source| RuntimeError::Io {
        op: "flock",
        path: lock_path,
        source,
    })?;
    let step = match attempt(repo, state, index, save) {
        Ok(step) => step,
        Err(RuntimeError::Git(err)) => Step::Blocked(err.to_string()),
        Err(err) => return Err(err),
    };
    let worker = &mut state.workers[index];
    worker.intent = None;
    match step {
        Step::Done(commit) => {
            worker.integrated = commit;
            worker.last_error = None;
            worker.set(WorkerStatus::Completed, &now(), None);
            save(state)?;
            cleanup(repo, state, index);
        }
        Step::Blocked(reason) => {
            worker.set(WorkerStatus::Blocked, &now(), Some(reason));
            save(state)?;
        }
    }
    Ok(())
}

/// Whether `commit` is in `target` (a ref or commit).
fn contains(git: &Git, target: &str, commit: &str) -> bool {
    git.succeeds(["merge-base", "--is-ancestor", commit, target])
}

fn attempt(
    repo: &Repo,
    state: &mut ParallelState,
    index: usize,
    save: &mut dyn FnMut(&ParallelState) -> Result<(), RuntimeError>,
) -> Result<Step, RuntimeError> {
    let main = Git::new(&repo.main);
    let target = state.target.clone();
    let mode = state.integrate;
    let target_ref = match mode {
        Integrate::Push => format!("refs/remotes/origin/{target}"),
        Integrate::Merge | Integrate::Branch => format!("refs/heads/{target}"),
    };
    if mode == Integrate::Push {
        main.run(["fetch", "--quiet", "origin", &target])?;
    }
    let worker = &state.workers[index];
    // An intent from a coordinator that died: did its ref update happen?
    if let Some(intent) = &worker.intent
        && contains(&main, &target_ref, &intent.commit)
    {
        return Ok(Step::Done(Some(intent.commit.clone())));
    }
    let Some(path) = worker.worktree.clone() else {
        return Ok(Step::Blocked("the worker has no worktree recorded".into()));
    };
    let wt = Git::new(&path);
    if !Path::new(&path).is_dir() {
        return Ok(Step::Blocked(format!(
            "its worktree {path} is gone; its branch {} keeps what was committed",
            worker.branch.as_deref().unwrap_or("?")
        )));
    }
    for leftover in ["rebase-merge", "rebase-apply"] {
        if wt.git_path(leftover)?.exists() {
            wt.run(["rebase", "--abort"])?;
        }
    }
    if wt.is_dirty()? {
        let message = format!(
            "dloop: task {} (run {})",
            worker.task,
            worker.run_id.as_deref().unwrap_or("?")
        );
        wt.run(["add", "-A"])?;
        wt.run(["commit", "--quiet", "--no-verify", "-m", &message])?;
    }
    if let Some(gate) = &state.gate {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(gate)
            .current_dir(&path)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| RuntimeError::Io {
                op: "run the gate in",
                path: path.clone().into(),
                source,
            })?;
        if !out.status.success() {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Ok(Step::Blocked(format!(
                "gate `{gate}` failed ({}){}",
                out.status,
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tail.join(" | "))
                }
            )));
        }
    }
    if mode == Integrate::Branch {
        return Ok(Step::Done(Some(wt.commit_of("HEAD")?)));
    }
    for _ in 0..ATTEMPTS {
        let onto = main.commit_of(&target_ref)?;
        let rebased = wt.output(["rebase", "--quiet", &onto])?;
        if !rebased.status.success() {
            let files = wt
                .run(["diff", "--name-only", "--diff-filter=U"])
                .unwrap_or_default();
            let _ = wt.run(["rebase", "--abort"]);
            return Ok(Step::Blocked(format!(
                "conflict rebasing onto {target}{}",
                if files.is_empty() {
                    format!(": {}", String::from_utf8_lossy(&rebased.stderr).trim())
                } else {
                    format!(" in {}", files.lines().collect::<Vec<_>>().join(", "))
                }
            )));
        }
        let commit = wt.commit_of("HEAD")?;
        if commit == onto {
            // The run changed nothing: there is nothing to bring back.
            return Ok(Step::Done(None));
        }
        state.workers[index].intent = Some(Intent {
            commit: commit.clone(),
            onto: onto.clone(),
        });
        save(state)?;
        crash_point("parallel_after_intent");
        let moved = match mode {
            Integrate::Push => main
                .output([
                    "push",
                    "--quiet",
                    "origin",
                    &format!("{commit}:refs/heads/{target}"),
                ])?
                .status
                .success(),
            Integrate::Merge | Integrate::Branch => match checked_out_in(&main, &target)? {
                Some(dir) => Git::new(dir)
                    .output(["merge", "--ff-only", "--quiet", &commit])?
                    .status
                    .success(),
                None => main.succeeds(["update-ref", &target_ref, &commit, &onto]),
            },
        };
        crash_point("parallel_after_update");
        if moved {
            if mode == Integrate::Push {
                // Keep the remote-tracking ref in step (a later worker rebases onto it).
                let _ = main.run(["fetch", "--quiet", "origin", &target]);
            }
            return Ok(Step::Done(Some(commit)));
        }
        if mode == Integrate::Push {
            main.run(["fetch", "--quiet", "origin", &target])?;
        }
        if main.commit_of(&target_ref)? == onto {
            return Ok(Step::Blocked(format!(
                "could not move {target} to {commit} (a fast-forward); is the checkout of \
                 {target} dirty?"
            )));
        }
        // The target moved since the rebase: rebase again.
    }
    Ok(Step::Blocked(format!(
        "{target} kept moving: {ATTEMPTS} rebases were overtaken"
    )))
}

/// The work tree that has `branch` checked out, if any.
fn checked_out_in(main: &Git, branch: &str) -> Result<Option<String>, RuntimeError> {
    let list = main.run(["worktree", "list", "--porcelain"])?;
    let mut dir = None;
    for line in list.lines() {
        if let Some(path) = line.strip_prefix("worktree ") {
            dir = Some(path.to_owned());
        } else if line == format!("branch refs/heads/{branch}") {
            return Ok(dir);
        }
    }
    Ok(None)
}

/// After an integration: the worktree goes; the branch too unless kept (or `branch` mode).
/// Best effort: a leftover folder or branch loses nothing.
fn cleanup(repo: &Repo, state: &ParallelState, index: usize) {
    let worker = &state.workers[index];
    if let Some(path) = &worker.worktree {
        let _ = crate::worktree::remove(&repo.main, Path::new(path));
    }
    if state.integrate != Integrate::Branch
        && !state.keep_branches
        && let Some(branch) = &worker.branch
    {
        let _ = Git::new(&repo.main).run(["branch", "-D", branch]);
    }
}
