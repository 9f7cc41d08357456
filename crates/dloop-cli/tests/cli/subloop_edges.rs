//! Sub-loop edges found by an adversarial review, through the real binary: SIGKILL in the
//! narrow windows around a child's creation, a child's files changed between a crash and the
//! parent's resume, and the commands (`resume`, `rm`, `fork`) pointed at a parent or a child in
//! the wrong order. Each test names what broke before its fix.

use crate::common::{count, verified_log};
use crate::gitrepo;
use crate::subloop_lifecycle::crash_then_resume;
use crate::subloops::{only_run_of, run_dir};

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
