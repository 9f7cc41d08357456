//! `dloop run --worktree`, step checkpoints, `dloop diff` and `dloop rewind`, against real git
//! repositories.

use crate::common::{TestProject, count, verified_log};
use crate::gitrepo::{dloop_git, git, git_project};

/// Three steps, each writing its own file into the working directory (and a trail in
/// `${run.dir}`).
const THREE_FILES: &str = "initial: s1
states:
  s1:
    shell: echo one > f1.txt && echo s1 >> \"$DLOOP_RUN_DIR/trail\"
    next: s2
  s2:
    shell: echo two > f2.txt && echo changed >> README && echo s2 >> \"$DLOOP_RUN_DIR/trail\"
    next: s3
  s3:
    shell: echo three > f3.txt && echo s3 >> \"$DLOOP_RUN_DIR/trail\"
    next: done
  done:
    terminal: success
";

fn run_id(p: &TestProject) -> (String, std::path::PathBuf) {
    p.only_run()
}

#[test]
fn a_worktree_run_works_in_its_own_worktree_and_keeps_its_log_in_the_main_repository() {
    let p = git_project();
    p.write_loop("files", THREE_FILES);
    let out = dloop_git(&p, &["run", "files", "--worktree"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (id, run_dir) = run_id(&p);
    let wt = p.root().join(".loops/.dloop/worktrees").join(&id);
    assert!(
        out.stderr.contains(&format!("branch dloop/{id}")),
        "{}",
        out.stderr
    );
    for file in ["f1.txt", "f2.txt", "f3.txt"] {
        assert!(wt.join(file).is_file(), "{file} is in the worktree");
        assert!(
            !p.root().join(file).exists(),
            "{file} is not in the main tree"
        );
    }
    // The log and ${run.dir} stay in the main repository's runtime folder.
    let trail = std::fs::read_to_string(run_dir.join("work/trail")).expect("trail");
    assert_eq!(trail, "s1\ns2\ns3\n");
    assert_eq!(count(&verified_log(&run_dir), "run_completed"), 1);
    let branch = git(&p, p.root(), &["branch", "--list", &format!("dloop/{id}")]);
    assert!(branch.contains(&format!("dloop/{id}")), "{branch}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["worktree"]["branch"], format!("dloop/{id}"));
    // The main tree is untouched: nothing but the test's own loop file is new there.
    assert_eq!(git(&p, p.root(), &["status", "--porcelain"]), "?? .loops/");
}

#[test]
fn branch_from_starts_the_worktree_at_the_given_commit_and_a_bad_ref_is_refused() {
    let p = git_project();
    p.write_loop("files", THREE_FILES);
    let first = git(&p, p.root(), &["rev-parse", "HEAD"]);
    p.write("later.txt", "later\n");
    git(&p, p.root(), &["add", "later.txt"]);
    git(&p, p.root(), &["commit", "--quiet", "-m", "later"]);
    let out = dloop_git(&p, &["run", "files", "--worktree", "--branch-from", "nope"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("--branch-from `nope`"),
        "{}",
        out.stderr
    );
    assert!(p.run_dirs().is_empty(), "a refused run leaves no folder");
    let out = dloop_git(&p, &["run", "files", "--worktree", "--branch-from", &first]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (id, _) = run_id(&p);
    let wt = p.root().join(".loops/.dloop/worktrees").join(&id);
    assert!(
        !wt.join("later.txt").exists(),
        "the branch starts before `later`"
    );
}

#[test]
fn resume_continues_in_the_worktree_and_a_vanished_worktree_is_reported_not_recreated() {
    let p = git_project();
    p.write_loop("files", THREE_FILES);
    let out = dloop_git(&p, &["run", "files", "--worktree", "--max-steps", "1"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let (id, _) = run_id(&p);
    let wt = p.root().join(".loops/.dloop/worktrees").join(&id);
    assert!(wt.join("f1.txt").is_file());
    let out = dloop_git(&p, &["resume", &id, "--max-steps", "1"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        wt.join("f2.txt").is_file(),
        "the resumed step ran in the worktree"
    );
    assert!(!p.root().join("f2.txt").exists());

    std::fs::remove_dir_all(&wt).expect("remove the worktree folder");
    let out = dloop_git(&p, &["resume", &id]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("is gone"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("dloop/{id}")),
        "{}",
        out.stderr
    );
    assert!(!wt.exists(), "the worktree is not re-created empty");
}

#[test]
fn worktree_outside_a_git_repository_is_refused() {
    let p = TestProject::new();
    p.write_loop("files", THREE_FILES);
    let out = dloop_git(&p, &["run", "files", "--worktree"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("needs a git repository"),
        "{}",
        out.stderr
    );
}

#[test]
fn diff_of_a_step_shows_exactly_what_its_action_changed() {
    let p = git_project();
    p.write_loop("files", THREE_FILES);
    let out = dloop_git(&p, &["run", "files"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (id, run_dir) = run_id(&p);
    let names = |step: Option<&str>| {
        let mut args = vec!["diff", id.as_str(), "--name-only"];
        args.extend(step);
        let out = dloop_git(&p, &args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(names(Some("1")), ["f1.txt"]);
    assert_eq!(names(Some("2")), ["README", "f2.txt"]);
    assert_eq!(names(Some("3")), ["f3.txt"]);
    assert_eq!(names(None), ["README", "f1.txt", "f2.txt", "f3.txt"]);
    let out = dloop_git(&p, &["diff", &id, "2"]);
    assert!(out.stdout.contains("+changed"), "{}", out.stdout);
    assert!(out.stdout.contains("+two"), "{}", out.stdout);
    assert!(!out.stdout.contains("+three"), "{}", out.stdout);
    // The runtime folder is never in a checkpoint, and the user's index and HEAD are as they
    // were: everything the run wrote is still untracked or unstaged.
    assert!(!names(None).iter().any(|n| n.starts_with(".loops")));
    let status = git(&p, p.root(), &["status", "--porcelain"]);
    assert!(
        status.contains("M README") && status.contains("?? f1.txt"),
        "{status}"
    );
    // Every checkpoint records what it cost.
    let records = verified_log(&run_dir);
    let costs: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["type"] == "action_finished")
        .map(|r| &r["checkpoint"]["cost_us"])
        .collect();
    assert_eq!(costs.len(), 3);
    assert!(costs.iter().all(|c| c.is_u64()), "{costs:?}");
    let out = dloop_git(&p, &["diff", &id, "7"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("steps with one: 1, 2, 3"),
        "{}",
        out.stderr
    );
}

#[test]
fn rewind_to_2_restores_the_files_and_resume_continues_from_step_3() {
    let p = git_project();
    p.write_loop("files", THREE_FILES);
    let out = dloop_git(&p, &["run", "files", "--worktree"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (id, run_dir) = run_id(&p);
    let wt = p.root().join(".loops/.dloop/worktrees").join(&id);

    // A change that is not the run's is refused, and nothing moves.
    std::fs::write(wt.join("mine.txt"), "mine\n").unwrap();
    let out = dloop_git(&p, &["rewind", &id, "--to", "2"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("mine.txt"), "{}", out.stderr);
    assert!(wt.join("f3.txt").is_file());
    std::fs::remove_file(wt.join("mine.txt")).unwrap();

    let out = dloop_git(&p, &["rewind", &id, "--to", "2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!wt.join("f3.txt").exists(), "step 3's file is gone");
    assert_eq!(std::fs::read_to_string(wt.join("f2.txt")).unwrap(), "two\n");
    assert!(
        std::fs::read_to_string(wt.join("README"))
            .unwrap()
            .ends_with("changed\n")
    );
    let inspect = dloop_git(&p, &["inspect", &id, "--json"]).json();
    assert_eq!(inspect["status"], "paused");
    assert_eq!(inspect["reason"], "rewound");
    assert_eq!(inspect["step"], 2);

    let out = dloop_git(&p, &["resume", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(wt.join("f3.txt")).unwrap(),
        "three\n"
    );
    let trail = std::fs::read_to_string(run_dir.join("work/trail")).expect("trail");
    assert_eq!(trail, "s1\ns2\ns3\ns3\n", "only step 3 ran again");
    let records = verified_log(&run_dir);
    assert_eq!(count(&records, "run_rewound"), 1);
    let after: Vec<u64> = records
        .iter()
        .skip_while(|r| r["type"] != "run_rewound")
        .filter(|r| r["type"] == "state_entered")
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(after.first(), Some(&3), "resume continued with step 3");
    // The diff of the new step 3 is its own change only.
    let out = dloop_git(&p, &["diff", &id, "3", "--name-only"]);
    assert_eq!(out.stdout.trim(), "f3.txt");
}

#[test]
fn rewind_of_a_step_without_checkpoint_says_which_steps_have_one() {
    let p = git_project();
    p.write_loop("files", THREE_FILES);
    let out = dloop_git(&p, &["run", "files"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (id, _) = run_id(&p);
    let out = dloop_git(&p, &["rewind", &id, "--to", "9"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("steps with one: 1, 2, 3"),
        "{}",
        out.stderr
    );
}
