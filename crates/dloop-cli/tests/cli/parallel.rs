//! `dloop parallel` against real repositories with a bare `origin`: integration that loses
//! nothing, conflicts and gates that block, and a coordinator killed at the worst moments.

use std::path::Path;
use std::time::Duration;

use crate::common::{TestProject, poll, signal};
use crate::gitrepo::{GIT_ENV, dloop_git, git, git_project};

/// Writes `${context.text}` as line 1 of `${context.file}` (other lines kept), after waiting
/// for `${context.wait}` to exist when given.
const EDIT: &str = "required: [file, text]
context:
  wait: ''
initial: write
states:
  write:
    shell: |
      if [ -n ${context.wait} ]; then while [ ! -e ${context.wait} ]; do sleep 0.05; done; fi
      if [ -f ${context.file} ]; then tail -n +2 ${context.file} > .rest; else : > .rest; fi
      { echo ${context.text}; cat .rest; } > ${context.file}; rm .rest
    next: done
  done:
    terminal: success
";

fn project(tasks: &str) -> TestProject {
    let p = git_project();
    p.write_loop("edit", EDIT);
    p.write("home/tasks.yaml", tasks);
    p
}

/// The state as `parallel status --json` prints it, with real paths (the test's output
/// redacts temp paths, so the file itself is read, after checking the command agrees).
fn state(p: &TestProject) -> serde_json::Value {
    let out = dloop_git(p, &["parallel", "status", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let printed = out.json();
    let path = p
        .root()
        .join(".loops/.dloop/parallel")
        .join(printed["id"].as_str().unwrap());
    let text = std::fs::read_to_string(path.join("parallel.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        doc["workers"].as_array().map(Vec::len),
        printed["workers"].as_array().map(Vec::len)
    );
    doc
}

fn statuses(p: &TestProject) -> Vec<(String, String)> {
    state(p)["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["task"].as_str().unwrap().to_owned(),
                w["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The number of commits on `main` whose subject names task `task`.
fn commits_of(p: &TestProject, task: &str) -> usize {
    git(p, p.root(), &["log", "--format=%s", "main"])
        .lines()
        .filter(|s| {
            *s == format!("dloop: task {task}") || s.starts_with(&format!("dloop: task {task} "))
        })
        .count()
}

fn worktrees(p: &TestProject) -> usize {
    git(p, p.root(), &["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
}

fn assert_fsck_clean(p: &TestProject) {
    let out = git(p, p.root(), &["fsck", "--no-dangling"]);
    assert!(!out.contains("error") && !out.contains("missing"), "{out}");
}

#[test]
fn three_tasks_on_different_files_all_land_in_the_target_and_no_worktree_is_left() {
    let p = project(
        "- id: a\n  file: a.txt\n  text: A\n- id: b\n  file: b.txt\n  text: B\n- id: c\n  file: c.txt\n  text: C\n",
    );
    let out = dloop_git(
        &p,
        &["parallel", "edit", "--tasks", "home/tasks.yaml", "-j", "2"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (_, status) in statuses(&p) {
        assert_eq!(status, "completed");
    }
    for (task, file, text) in [
        ("a", "a.txt", "A"),
        ("b", "b.txt", "B"),
        ("c", "c.txt", "C"),
    ] {
        assert_eq!(git(&p, p.root(), &["show", &format!("main:{file}")]), text);
        assert_eq!(commits_of(&p, task), 1, "task {task} integrated once");
        // The checkout of main followed the fast-forwards.
        assert_eq!(p.read(file).trim(), text);
    }
    assert_fsck_clean(&p);
    assert_eq!(worktrees(&p), 1, "only the main work tree is left");
    let branches = git(&p, p.root(), &["branch", "--list", "dloop/*"]);
    assert_eq!(branches, "", "integrated branches are deleted by default");
}

#[test]
fn push_mode_pushes_every_task_to_origin_without_force() {
    let p = project("- id: a\n  file: a.txt\n  text: A\n- id: b\n  file: b.txt\n  text: B\n");
    let out = dloop_git(
        &p,
        &[
            "parallel",
            "edit",
            "--tasks",
            "home/tasks.yaml",
            "--integrate",
            "push",
            "--keep-branches",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let origin = p.root().join("home/origin.git");
    for file in ["a.txt", "b.txt"] {
        git(&p, &origin, &["cat-file", "-e", &format!("main:{file}")]);
    }
    let log = git(&p, &origin, &["log", "--format=%s", "main"]);
    assert_eq!(
        log.lines().filter(|l| l.starts_with("dloop: task")).count(),
        2,
        "{log}"
    );
    let branches = git(&p, p.root(), &["branch", "--list", "dloop/*"]);
    assert_eq!(
        branches.lines().count(),
        2,
        "--keep-branches kept them: {branches}"
    );
}

#[test]
fn a_conflict_blocks_one_task_keeping_its_worktree_and_retry_after_a_fix_integrates_it() {
    let p = project(
        "- id: first\n  file: README\n  text: FIRST\n- id: second\n  file: README\n  text: SECOND\n",
    );
    let out = dloop_git(
        &p,
        &["parallel", "edit", "--tasks", "home/tasks.yaml", "-j", "2"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let doc = state(&p);
    let workers = doc["workers"].as_array().unwrap();
    let blocked: Vec<&serde_json::Value> = workers
        .iter()
        .filter(|w| w["status"] == "blocked")
        .collect();
    assert_eq!(blocked.len(), 1, "{doc:#}");
    assert_eq!(
        workers
            .iter()
            .filter(|w| w["status"] == "completed")
            .count(),
        1
    );
    let error = blocked[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("conflict") && error.contains("README"),
        "{error}"
    );
    let wt = blocked[0]["worktree"].as_str().unwrap();
    let branch = blocked[0]["branch"].as_str().unwrap();
    assert!(Path::new(wt).is_dir(), "the blocked worktree is kept");
    git(&p, p.root(), &["rev-parse", "--verify", branch]);
    let task = blocked[0]["task"].as_str().unwrap().to_owned();
    let winner = if task == "first" { "second" } else { "first" };

    // A person resolves it: their side of the line wins.
    git(&p, Path::new(wt), &["rebase", "-X", "theirs", "main"]);
    let out = dloop_git(&p, &["parallel", "retry", &task]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(commits_of(&p, &task), 1);
    assert_eq!(commits_of(&p, winner), 1);
    let readme = git(&p, p.root(), &["show", "main:README"]);
    assert_eq!(readme.lines().next(), Some(task.to_uppercase().as_str()));
    assert_fsck_clean(&p);
    assert_eq!(worktrees(&p), 1);
}

#[test]
fn a_failing_gate_blocks_and_a_passing_gate_lets_it_through() {
    let p = project(
        "- id: good\n  file: ok.txt\n  text: fine\n- id: bad\n  file: other.txt\n  text: nope\n",
    );
    let out = dloop_git(
        &p,
        &[
            "parallel",
            "edit",
            "--tasks",
            "home/tasks.yaml",
            "--gate",
            "test -f ok.txt || { echo no ok.txt; exit 3; }",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let doc = state(&p);
    let by = |task: &str| {
        doc["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["task"] == task)
            .unwrap()
            .clone()
    };
    assert_eq!(by("good")["status"], "completed");
    assert_eq!(by("bad")["status"], "blocked");
    let error = by("bad")["last_error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("gate") && error.contains("no ok.txt"),
        "{error}"
    );
    assert!(Path::new(by("bad")["worktree"].as_str().unwrap()).is_dir());
    assert_eq!(commits_of(&p, "good"), 1);
    assert_eq!(
        commits_of(&p, "bad"),
        0,
        "a blocked task never reaches the target"
    );
}

#[test]
fn a_coordinator_killed_while_workers_run_and_while_one_integrates_resumes_to_exactly_once() {
    let release = "home/release";
    let tasks = format!(
        "- id: a\n  file: a.txt\n  text: A\n  wait: {release}\n- id: b\n  file: b.txt\n  text: B\n  wait: {release}\n- id: c\n  file: c.txt\n  text: C\n  wait: {release}\n"
    );
    let p = project(&tasks);
    // The workers' loop reads `wait` relative to its worktree: give it an absolute path.
    let abs = p.root().join(release).display().to_string();
    p.write("home/tasks.yaml", &tasks.replace(release, &abs));
    let child = p.spawn(
        &["parallel", "edit", "--tasks", "home/tasks.yaml", "-j", "3"],
        GIT_ENV,
    );
    let pid = child.id();
    // Kill the coordinator while all three workers are running.
    let running = poll(Duration::from_secs(30), || {
        let text =
            std::fs::read_to_string(p.root().join(".loops/.dloop/parallel/edit-1/parallel.json"))
                .ok()?;
        let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
        let all = doc["workers"]
            .as_array()?
            .iter()
            .all(|w| w["status"] == "running" && w["run_id"].is_string());
        all.then_some(())
    });
    assert!(running.is_some(), "the workers did not all start");
    signal(pid, "KILL");
    let out = p.wait(child, Duration::from_secs(30));
    assert_eq!(out.signal, Some(9));
    p.write(release, "go\n");

    // Resume, and die again right after the first target update (while integrating).
    let out = p.dloop_env(
        &["parallel", "resume"],
        &[GIT_ENV, &[("DLOOP_CRASH_AT", "parallel_after_update")]].concat(),
    );
    assert_eq!(out.signal, Some(9), "{}", out.stderr);
    let integrating = statuses(&p)
        .into_iter()
        .filter(|(_, s)| s == "integrating")
        .count();
    assert!(integrating >= 1, "{:?}", statuses(&p));

    let out = dloop_git(&p, &["parallel", "resume"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (_, status) in statuses(&p) {
        assert_eq!(status, "completed");
    }
    for task in ["a", "b", "c"] {
        assert_eq!(
            commits_of(&p, task),
            1,
            "task {task} integrated exactly once"
        );
    }
    let total = git(&p, p.root(), &["rev-list", "--count", "main"]);
    assert_eq!(total, "4", "the first commit and one per task");
    assert_fsck_clean(&p);
    assert_eq!(worktrees(&p), 1);
}

#[test]
fn a_state_file_from_a_newer_dloop_is_refused_and_left_alone() {
    let p = project("- id: a\n  file: a.txt\n  text: A\n");
    let out = dloop_git(&p, &["parallel", "edit", "--tasks", "home/tasks.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let path = p.root().join(".loops/.dloop/parallel/edit-1/parallel.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"schema_version\": 2", "\"schema_version\": 9");
    std::fs::write(&path, &text).unwrap();
    let out = dloop_git(&p, &["parallel", "resume"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("newer than this dloop"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}
