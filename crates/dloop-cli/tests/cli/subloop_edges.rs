//! Sub-loop edges found by an adversarial review, through the real binary: SIGKILL in the
//! narrow windows around a child's creation, a child's files changed between a crash and the
//! parent's resume, and the commands (`resume`, `rm`, `fork`) pointed at a parent or a child in
//! the wrong order. Each test names what broke before its fix.

use crate::common::{count, verified_log};
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
