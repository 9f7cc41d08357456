//! Sub-loop edges found by an adversarial review, through the real binary: SIGKILL in the
//! narrow windows around a child's creation, a child's files changed between a crash and the
//! parent's resume, and the commands (`resume`, `rm`, `fork`) pointed at a parent or a child in
//! the wrong order. Each test names what broke before its fix.

use crate::common::TestProject;
use std::time::Duration;

use crate::common::{count, poll, process_alive, verified_log};
use crate::gitrepo;
use crate::subloop_lifecycle::crash_then_resume;
use crate::subloops::{COUNTER, only_run_of, parent_of, run_dir};

#[test]
fn sigkill_before_the_childs_first_record_then_resume_starts_the_child() {
    // Batches: the parent's start with its step's intent (1), the child's id (2), the child's
    // `run_started` + `sub_loop_of` (3): killed with the child's folder made and its log empty.
    // The resume used to fail with an internal error (the child's log was never loaded).
    let p = crash_then_resume("before_append:3");
    let child = only_run_of(&p, "counter");
    let child_log = verified_log(&run_dir(&p, &child));
    assert_eq!(count(&child_log, "run_started"), 1);
    assert_eq!(count(&child_log, "sub_loop_of"), 1);
}

#[test]
fn a_child_of_a_worktree_run_resumed_on_its_own_works_in_the_parents_worktree() {
    // The child used to be resumed in the main tree, so its second step wrote there.
    let p = gitrepo::git_project();
    p.write_loop(
        "parent",
        "initial: sub\nstates:\n  sub:\n    loop: kid\n    next: after\n  after:\n    shell: pwd > after.txt\n    next: done\n  done:\n    terminal: success\n",
    );
    p.write_loop(
        "kid",
        "initial: k1\nlimits:\n  max_steps: 1\nstates:\n  k1:\n    shell: pwd > k1.txt\n    next: k2\n  k2:\n    shell: pwd > k2.txt\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = gitrepo::dloop_git(&p, &["run", "parent", "--worktree"]);
    assert_eq!(out.code, 3, "{}", out.render());
    let parent = only_run_of(&p, "parent");
    let kid = only_run_of(&p, "kid");
    let out = gitrepo::dloop_git(&p, &["resume", &kid]);
    assert_eq!(out.code, 0, "{}", out.render());
    let out = gitrepo::dloop_git(&p, &["resume", &parent]);
    assert_eq!(out.code, 0, "{}", out.render());
    let wt = p.root().join(".loops/.dloop/worktrees").join(&parent);
    for file in ["k1.txt", "k2.txt", "after.txt"] {
        assert!(
            wt.join(file).is_file(),
            "{file} is in the parent's worktree"
        );
        assert!(
            !p.root().join(file).exists(),
            "{file} is not in the main tree"
        );
    }
}

/// A child that asks the fake `claude` ($0.0421 a call) until its answer says `NEVER`.
const SPENDER: &str = "initial: q\nstates:\n  q:\n    prompt: say hi\n    runner: claude\n    evaluate:\n      type: contains\n      pattern: NEVER\n    on: { success: done, failure: q }\n  done:\n    terminal: success\n";

/// The fake agents first on `PATH`.
fn fakes_path() -> String {
    format!(
        "{}:{}",
        crate::common::repo_root()
            .join("tests/fixtures/agents")
            .display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn a_spending_child_stays_within_what_its_parents_budget_leaves() {
    // The child used to run with no budget at all: a parent given $0.05 let its child spend
    // $4.21 (100 calls) before the parent's budget was ever checked.
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("spender"));
    p.write_loop("spender", SPENDER);
    let path = fakes_path();
    let env = [("PATH", path.as_str())];
    let out = p.dloop_env(
        &["run", "parent", "--no-llm", "--max-cost-usd", "0.05"],
        &env,
    );
    assert_eq!(out.code, 3, "{}", out.render());
    let parent = only_run_of(&p, "parent");
    let child = only_run_of(&p, "spender");
    let child_json = p.dloop(&["inspect", &child, "--json"]).json();
    // Two calls ($0.0842) are the first past $0.05: the child pauses there, and its parent too.
    assert_eq!(child_json["agent"]["invocations"], 2, "{child_json}");
    assert_eq!(child_json["reason"], "budget", "{child_json}");
    let parent_json = p.dloop(&["inspect", &parent, "--json"]).json();
    assert_eq!(parent_json["reason"], "budget", "{parent_json}");

    // A larger budget given to the parent reaches the child: $0.20 is passed after 5 calls.
    let out = p.dloop_env(&["resume", &parent, "--max-cost-usd", "0.2"], &env);
    assert_eq!(out.code, 3, "{}", out.render());
    let child_json = p.dloop(&["inspect", &child, "--json"]).json();
    assert_eq!(child_json["agent"]["invocations"], 5, "{child_json}");
    assert_eq!(count(&verified_log(&run_dir(&p, &child)), "run_resumed"), 1);
}

#[test]
fn rm_of_a_finished_child_whose_parent_has_not_finished_is_refused() {
    // `rm` used to delete it, and the parent's resume then ran the whole child again.
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("counter"));
    p.write_loop("counter", COUNTER);
    // Side effects 1-5 are the child's steps, the 6th the parent's step, before its record.
    let out = p.dloop_env(
        &["run", "parent"],
        &[("DLOOP_CRASH_AT", "after_side_effect:6")],
    );
    assert_eq!(out.signal, Some(9), "{}", out.render());
    let parent = only_run_of(&p, "parent");
    let child = only_run_of(&p, "counter");
    let out = p.dloop(&["rm", &child]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains(&parent), "{}", out.stderr);
    assert!(run_dir(&p, &child).is_dir());
    let out = p.dloop(&["resume", &parent]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(p.read("marker.txt"), "s1\ns2\ns3\ns4\ns5\nparent-after\n");
    // Once the parent has finished, the child goes like any finished run.
    let out = p.dloop(&["rm", &child]);
    assert_eq!(out.code, 0, "{}", out.render());
}

#[test]
fn stop_force_of_a_parent_ends_the_action_its_child_was_running() {
    // `stop --force PARENT` used to end only the parent's own action (it has none: its child
    // run's action is what runs), leaving the child's process running with nobody driving it.
    let p = TestProject::new();
    p.write_loop(
        "parent",
        "initial: sub\nstates:\n  sub:\n    loop: kid\n    next: done\n  done:\n    terminal: success\n",
    );
    p.write_loop(
        "kid",
        "initial: k1\nstates:\n  k1:\n    shell: echo $$ > pid.txt; exec sleep 1000\n    next: done\n  done:\n    terminal: success\n",
    );
    let run = p.spawn(&["run", "parent"], &[]);
    let pid: u32 = poll(Duration::from_secs(30), || {
        std::fs::read_to_string(p.root().join("pid.txt"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    })
    .expect("the child's action started");
    let parent = only_run_of(&p, "parent");
    let out = p.dloop(&["stop", "--force", &parent]);
    assert_eq!(out.code, 0, "{}", out.render());
    let _ = p.wait(run, Duration::from_secs(30));
    let gone = poll(Duration::from_secs(10), || {
        (!process_alive(pid)).then_some(())
    });
    assert!(gone.is_some(), "the child's action (pid {pid}) still runs");
    let kid = only_run_of(&p, "kid");
    assert_eq!(
        p.dloop(&["inspect", &kid, "--json"]).json()["status"],
        "crashed"
    );
}

#[test]
fn cancel_of_a_fork_leaves_the_source_runs_child_alone() {
    // The fork's copied history names the source's child (its step 1 took that child's
    // result); `cancel FORK` used to cancel it, changing a run of the source the fork only read.
    let p = TestProject::new();
    p.write_loop(
        "parent",
        "initial: sub\nlimits:\n  max_steps: 2\nstates:\n  sub:\n    loop: kid\n    on: { success: a, failure: a }\n  a:\n    shell: echo a\n    next: b\n  b:\n    shell: echo b\n    next: done\n  done:\n    terminal: success\n",
    );
    // The child times out after its first step: `timed_out` is resumable, not finished.
    p.write_loop(
        "kid",
        "initial: k1\nlimits:\n  timeout: 10ms\nstates:\n  k1:\n    shell: sleep 0.1\n    next: k2\n  k2:\n    shell: echo k2\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "parent"]);
    assert_eq!(out.code, 3, "{}", out.render());
    let source = only_run_of(&p, "parent");
    let kid = only_run_of(&p, "kid");
    assert_eq!(
        p.dloop(&["inspect", &kid, "--json"]).json()["status"],
        "timed_out"
    );
    let out = p.dloop(&["fork", &source, "--at", "1"]);
    assert_eq!(out.code, 3, "{}", out.render());
    let fork = p
        .run_ids()
        .into_iter()
        .find(|id| id.starts_with("parent-") && *id != source)
        .expect("the fork");
    let out = p.dloop(&["cancel", &fork]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        p.dloop(&["inspect", &kid, "--json"]).json()["status"],
        "timed_out"
    );
    // Cancelling the source, whose child it is, still cancels it.
    let out = p.dloop(&["cancel", &source]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        p.dloop(&["inspect", &kid, "--json"]).json()["status"],
        "cancelled"
    );
}

#[test]
fn resume_of_a_parent_whose_child_is_resumed_on_its_own_right_now_is_refused_untouched() {
    // The parent's resume used to record its step as started again, then fail on the child's
    // lock: the paused parent was left `crashed`, with a hint to stop it (it was not live).
    let p = TestProject::new();
    p.write_loop(
        "parent",
        "initial: sub\nstates:\n  sub:\n    loop: kid\n    next: after\n  after:\n    shell: echo after >> marker.txt\n    next: done\n  done:\n    terminal: success\n",
    );
    p.write_loop(
        "kid",
        "initial: k1\nlimits:\n  max_steps: 1\nstates:\n  k1:\n    shell: echo k1 >> marker.txt\n    next: k2\n  k2:\n    shell: |\n      echo k2-start >> marker.txt\n      for i in $(seq 300); do test -f go && break; sleep 0.1; done\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "parent"]);
    assert_eq!(out.code, 3, "{}", out.render());
    let parent = only_run_of(&p, "parent");
    let kid = only_run_of(&p, "kid");
    let before = std::fs::read(run_dir(&p, &parent).join("events.jsonl")).expect("log");
    let alone = p.spawn(&["resume", &kid], &[]);
    poll(Duration::from_secs(30), || {
        p.read("marker.txt").contains("k2-start").then_some(())
    })
    .expect("the child's step 2 started");
    let out = p.dloop(&["resume", &parent]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains(&kid), "{}", out.stderr);
    let after = std::fs::read(run_dir(&p, &parent).join("events.jsonl")).expect("log");
    assert_eq!(before, after, "the parent's log is untouched");
    assert_eq!(
        p.dloop(&["inspect", &parent, "--json"]).json()["status"],
        "paused"
    );
    p.write("go", "");
    let out = p.wait(alone, Duration::from_secs(60));
    assert_eq!(out.code, 0, "{}", out.render());
    let out = p.dloop(&["resume", &parent]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(p.read("marker.txt"), "k1\nk2-start\nafter\n");
}

#[test]
fn a_loop_that_names_an_invalid_child_says_invalid_not_missing() {
    // It used to say the child loop "does not exist" while its file was right there.
    let p = TestProject::new();
    p.write_loop("parent", &parent_of("kid"));
    p.write_loop("kid", "initial: [\n");
    for args in [["validate", "parent"], ["run", "parent"]] {
        let out = p.dloop(&args);
        assert_eq!(out.code, 2, "{}", out.render());
        // `validate` reports on stdout, `run` on stderr.
        let text = out.render();
        assert!(
            text.contains("runs loop `kid`, which is not a valid loop"),
            "{text}"
        );
        assert!(text.contains("dloop validate kid"), "{text}");
        assert!(!text.contains("does not exist"), "{text}");
    }
}
