//! Runs in their own git worktree (`dloop run --worktree`, and every `dloop parallel` worker).
//!
//! A worktree run gets a linked worktree at `<worktrees dir>/<run-id>` on a new branch
//! `dloop/<run-id>`, made from `--branch-from` (default `HEAD`). Its actions run there; its log,
//! outputs and `${run.dir}` stay in the main repository's runtime folder, so one run's tracking
//! is never split across two folders. The worktree (path, branch, base commit) is written in
//! `run.json` before the run's first record, so resume finds it.
//!
//! Invariants:
//! - a worktree is never re-created by resume: a folder that vanished is reported, because an
//!   empty new checkout would silently lose the run's work;
//! - nothing here deletes a branch that holds commits no other ref has, unless asked to.

use std::path::{Path, PathBuf};

use dloop_store::WorktreeRef;

use crate::error::RuntimeError;
use crate::git::Git;

/// What `--worktree` asks for.
#[derive(Debug, Clone)]
pub struct WorktreeRequest {
    /// Where worktrees go (`.loops/.dloop/worktrees/`); the run's is `<dir>/<run-id>`.
    pub dir: PathBuf,
    /// The commit the branch starts at (`--branch-from`; default `HEAD`).
    pub branch_from: Option<String>,
}

/// The branch of a worktree run.
pub fn branch_name(run_id: &str) -> String {
    format!("dloop/{run_id}")
}

/// Checks `--worktree` can work from `project_root` before a run is created: it is in a git
/// work tree, and the start point names a commit. Returns the repository's top and the commit.
///
/// # Errors
/// [`RuntimeError::Worktree`] saying what is missing.
pub fn prepare(
    project_root: &Path,
    request: &WorktreeRequest,
) -> Result<(PathBuf, String), RuntimeError> {
    let Some(top) = Git::toplevel(project_root) else {
        return Err(RuntimeError::Worktree(format!(
            "--worktree needs a git repository, and {} is not in one; `git init` and a first \
             commit make it one",
            project_root.display()
        )));
    };
    let from = request.branch_from.as_deref().unwrap_or("HEAD");
    let base = Git::new(&top).commit_of(from).map_err(|_| {
        RuntimeError::Worktree(format!(
            "--branch-from `{from}` names no commit in {} (a new repository needs a first \
             commit)",
            top.display()
        ))
    })?;
    Ok((top, base))
}

/// Adds the worktree of run `run_id` on a new branch at `base`.
///
/// # Errors
/// git failed (the branch or folder exists, the disk is full).
pub fn create(
    repo: &Path,
    dir: &Path,
    run_id: &str,
    base: &str,
) -> Result<WorktreeRef, RuntimeError> {
    std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
        op: "create",
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(run_id);
    let branch = branch_name(run_id);
    Git::new(repo).run([
        "worktree".as_ref(),
        "add".as_ref(),
        "--quiet".as_ref(),
        "-b".as_ref(),
        branch.as_ref(),
        path.as_os_str(),
        base.as_ref(),
    ])?;
    Ok(WorktreeRef {
        path: path.display().to_string(),
        branch,
        base: base.to_owned(),
    })
}

/// Checks a run's worktree is still there before a session works in it.
///
/// # Errors
/// [`RuntimeError::Worktree`] when its folder vanished or is no longer a git work tree.
pub fn check(run_id: &str, worktree: &WorktreeRef) -> Result<PathBuf, RuntimeError> {
    let path = PathBuf::from(&worktree.path);
    let gone = |what: &str| {
        RuntimeError::Worktree(format!(
            "the worktree of run {run_id} ({}) {what}; dloop does not re-create it empty. Its \
             branch `{}` keeps what was committed: `git worktree prune` then `git worktree add \
             {} {}` brings it back, or `dloop cancel {run_id}` ends the run",
            worktree.path, worktree.branch, worktree.path, worktree.branch
        ))
    };
    if !path.is_dir() {
        return Err(gone("is gone"));
    }
    match Git::toplevel(&path) {
        Some(top) if same_dir(&top, &path) => Ok(path),
        _ => Err(gone("is no longer a git worktree")),
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Removes a worktree's folder (and git's record of it). The branch stays.
///
/// # Errors
/// git failed.
pub fn remove(repo: &Path, path: &Path) -> Result<(), RuntimeError> {
    if path.exists() {
        Git::new(repo).run([
            "worktree".as_ref(),
            "remove".as_ref(),
            "--force".as_ref(),
            path.as_os_str(),
        ])?;
    }
    Git::new(repo).run(["worktree", "prune"])?;
    Ok(())
}

/// Takes back a worktree [`create`] just made for a run that was not created after all (its
/// branch holds nothing but the base commit). Best effort: a leftover is harmless.
pub fn discard_new(repo: &Path, worktree: &WorktreeRef) {
    let _ = remove(repo, Path::new(&worktree.path));
    let _ = Git::new(repo).run(["branch", "-D", &worktree.branch]);
}

/// Sets a session up for its run: in the run's worktree when it has one (checked: a vanished
/// folder is an error), with step checkpoints of the work tree when asked for and possible.
///
/// # Errors
/// [`RuntimeError::Worktree`] when the run's worktree is gone.
pub fn attach(
    options: &mut crate::driver::SessionOptions,
    meta: &dloop_store::RunMeta,
    run_dir: &Path,
) -> Result<(), RuntimeError> {
    if let Some(worktree) = &meta.worktree {
        options.project_root = check(&meta.id, worktree)?;
    }
    if let Some(runtime) = &options.checkpoints {
        options.step_hook =
            crate::checkpoint::GitCheckpoints::open(&options.project_root, run_dir, runtime)
                .map(|hook| std::sync::Arc::new(hook) as _);
    }
    Ok(())
}
