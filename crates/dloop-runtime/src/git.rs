//! Git plumbing through the `git` command line (no git library: build time, and the user's own
//! git and configuration are the ones that matter).
//!
//! Every call names its directory (`git -C DIR`), never relies on the process's cwd, and can
//! point git at another index file (`GIT_INDEX_FILE`) so dloop's own snapshots never touch the
//! user's index. Failures carry git's stderr, so a message says what git said.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A failed git command: what was run and what git said.
#[derive(Debug, thiserror::Error)]
#[error("`git {args}` in {dir} failed: {message}")]
pub struct GitError {
    /// The arguments, joined by spaces.
    pub args: String,
    /// The directory it ran in.
    pub dir: String,
    /// git's stderr (trimmed), or why git could not be started.
    pub message: String,
}

/// One repository directory (a work tree: the main one or a linked worktree).
#[derive(Debug, Clone)]
pub struct Git {
    dir: PathBuf,
    index: Option<PathBuf>,
}

impl Git {
    /// Git in `dir`, with the repository's own index.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            index: None,
        }
    }

    /// The same directory with `index` as the index file (`GIT_INDEX_FILE`).
    pub fn with_index(&self, index: impl Into<PathBuf>) -> Self {
        Self {
            dir: self.dir.clone(),
            index: Some(index.into()),
        }
    }

    /// The directory git runs in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(&self.dir).args(args);
        if let Some(index) = &self.index {
            cmd.env("GIT_INDEX_FILE", index);
        }
        // Never wait for a credential prompt or an editor: dloop runs unattended.
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_EDITOR", "true")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs git and returns its output whatever the exit status.
    ///
    /// # Errors
    /// git could not be started.
    pub fn output<I, S>(&self, args: I) -> Result<Output, GitError>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        self.command(args.clone())
            .output()
            .map_err(|err| self.error(args, err.to_string()))
    }

    /// Runs git; its stdout, trimmed, when it exits 0.
    ///
    /// # Errors
    /// git could not be started or exited non-zero (the error holds its stderr).
    pub fn run<I, S>(&self, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let out = self.output(args.clone())?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let message = match (stderr.is_empty(), stdout.is_empty()) {
                (false, _) => stderr,
                (true, false) => stdout,
                (true, true) => format!("exit status {}", out.status),
            };
            return Err(self.error(args, message));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Whether git exits 0.
    pub fn succeeds<I, S>(&self, args: I) -> bool
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        self.output(args).is_ok_and(|o| o.status.success())
    }

    fn error<I, S>(&self, args: I, message: String) -> GitError
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        GitError {
            args: args
                .into_iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            dir: self.dir.display().to_string(),
            message,
        }
    }

    /// The top of the work tree `dir` is in, or `None` outside one (or without git).
    pub fn toplevel(dir: &Path) -> Option<PathBuf> {
        let top = Self::new(dir).run(["rev-parse", "--show-toplevel"]).ok()?;
        (!top.is_empty()).then(|| PathBuf::from(top))
    }

    /// The commit `rev` names.
    ///
    /// # Errors
    /// `rev` names no commit.
    pub fn commit_of(&self, rev: &str) -> Result<String, GitError> {
        self.run([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ])
    }

    /// Where git keeps `name` for this work tree (`index`, `rebase-merge`, ...), absolute.
    ///
    /// # Errors
    /// git failed.
    pub fn git_path(&self, name: &str) -> Result<PathBuf, GitError> {
        let path = PathBuf::from(self.run(["rev-parse", "--git-path", name])?);
        Ok(if path.is_absolute() {
            path
        } else {
            self.dir.join(path)
        })
    }

    /// Whether the work tree or index differ from HEAD (untracked files count).
    ///
    /// # Errors
    /// git failed.
    pub fn is_dirty(&self) -> Result<bool, GitError> {
        Ok(!self.run(["status", "--porcelain"])?.is_empty())
    }
}
