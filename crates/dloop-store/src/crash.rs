//! `DLOOP_CRASH_AT`: crash points for tests that kill the process with SIGKILL at an exact step.
//!
//! `DLOOP_CRASH_AT=<point>[:<n>]` makes the process SIGKILL itself the `n`-th time (default: the
//! first) execution reaches [`crash_point`]`(point)`. The variable is read once; when it is unset
//! a crash point costs one branch on a cached value.
//!
//! Points in the store:
//! - `before_append`: in `append_batch`, before anything of the batch is written.
//! - `mid_write`: `append_batch` writes only the first half of the batch's bytes, then dies
//!   (a torn write; the next open cuts it).
//! - `before_fsync`: the batch is written (in the page cache) but not yet `fdatasync`ed.
//! - `after_fsync`: the batch is durable; the caller has not yet been told.
//! - `snapshot_before_rename`: `state.json.tmp` is written and synced, not yet renamed.
//! - `snapshot_after_rename`: `state.json` is replaced, the folder not yet synced.
//!
//! The runtime adds its own (`after_intent`, `after_side_effect`, and `after_sub_loop_note`:
//! a sub-loop's child id is durable in the parent's log, the child not yet created) by calling
//! [`crash_point`].
//! A process killed by SIGKILL loses nothing the kernel already has, so these points test
//! process crashes, not power loss.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    point: String,
    nth: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("DLOOP_CRASH_AT").ok()?;
            let (point, nth) = match spec.split_once(':') {
                Some((p, n)) => (p.to_owned(), n.trim().parse().unwrap_or(1)),
                None => (spec, 1),
            };
            Some(Armed {
                point,
                nth: nth.max(1),
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Counts one arrival at `name`; true when this arrival is the one to crash at.
pub(crate) fn is_hit(name: &str) -> bool {
    match armed() {
        None => false,
        Some(a) if a.point != name => false,
        Some(a) => a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.nth,
    }
}

/// SIGKILLs the process now. Never returns.
pub(crate) fn die() -> ! {
    // SIGKILL, not abort(): abort runs a signal handler path and may dump core; we want exactly
    // what `kill -9` does. The workspace denies unsafe code, so ask kill(1).
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
    for _ in 0..500 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // kill(1) is missing or did not work: the closest thing left.
    std::process::abort()
}

/// A crash point: SIGKILLs the process when `DLOOP_CRASH_AT` names `name` and this is its `n`-th
/// arrival. Does nothing (one cached branch) when the variable is unset.
pub fn crash_point(name: &str) {
    if is_hit(name) {
        die();
    }
}
