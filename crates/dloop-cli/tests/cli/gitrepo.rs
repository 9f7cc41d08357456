//! Real git repositories for the worktree, checkpoint and parallel tests: a [`TestProject`]
//! turned into a repository with one commit on `main`, and a bare `origin` beside it. The test
//! environment is cleared, so git gets its identity and HOME from here.

use std::path::Path;
use std::process::Command;

use crate::common::{Output, TestProject};

/// What git needs in the cleared test environment (identity, no system or global config).
pub const GIT_ENV: &[(&str, &str)] = &[
    ("GIT_AUTHOR_NAME", "dloop test"),
    ("GIT_AUTHOR_EMAIL", "test@dloop.invalid"),
    ("GIT_COMMITTER_NAME", "dloop test"),
    ("GIT_COMMITTER_EMAIL", "test@dloop.invalid"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
];

/// Runs git in `dir`; panics with its stderr on failure; returns stdout trimmed.
pub fn git(p: &TestProject, dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", p.root().join("home"))
        .envs(GIT_ENV.iter().copied())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A project that is a git repository on `main` with one commit (a README and a .gitignore
/// that leaves out dloop's runtime folder and the test HOME), pushed to a bare `origin`.
pub fn git_project() -> TestProject {
    let p = TestProject::new();
    std::fs::remove_dir(p.root().join(".git")).expect("remove the placeholder .git");
    let root = p.root();
    git(&p, root, &["init", "--quiet", "-b", "main"]);
    p.write(".gitignore", ".loops/.dloop/\nhome/\n");
    p.write("README", "line one\nline two\nline three\n");
    git(&p, root, &["add", "-A"]);
    git(&p, root, &["commit", "--quiet", "-m", "first"]);
    let origin = root.join("home/origin.git");
    git(
        &p,
        root,
        &["init", "--quiet", "--bare", &origin.display().to_string()],
    );
    git(
        &p,
        root,
        &["remote", "add", "origin", &origin.display().to_string()],
    );
    git(&p, root, &["push", "--quiet", "-u", "origin", "main"]);
    p
}

/// Runs `dloop ARGS` with git's environment.
pub fn dloop_git(p: &TestProject, args: &[&str]) -> Output {
    p.dloop_env(args, GIT_ENV)
}
