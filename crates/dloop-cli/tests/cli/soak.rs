//! The soak (issue 13; ignored by default, `.ci/run` runs it with a small bound): 8 runs of the
//! crashy loop at once, each killed with SIGKILL at random moments and resumed, then every
//! invariant checked on every run: a gapless, checksummed log, no finished step run again, and
//! the same end as an uninterrupted run.
//!
//! Bounds: `DLOOP_SOAK_STEPS` (counting steps per run, default 2,000) and `DLOOP_SOAK_KILLS`
//! (SIGKILLs per run, default 20). Run it with
//! `cargo test -p dloop-cli --test cli -- --ignored soak --nocapture`.

use std::time::Duration;

use crate::common::{XorShift, poll};
use crate::crash::{Crashy, assert_invariants, end_of, expected_end, resume_to_end, strs};

const RUNS: u64 = 8;

fn bound(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One soaked run: start it, kill it `kills` times at random moments (resuming after each),
/// let the last session finish, and check everything.
fn soak_one(seed: u64, steps: u64, kills: u64) {
    let mut rng = XorShift(seed);
    let crashy = Crashy::new();
    let project = &crashy.project;
    let max_steps = (steps + 10).to_string();
    let args = crashy.run_args(steps, "0", &["--max-steps", &max_steps]);
    let mut child = project.spawn(&strs(&args), &[]);
    // The first kill waits for the first record, so every kill lands on a run that exists.
    let (id, run_dir) = project.wait_for_log(Duration::from_secs(60), |r| !r.is_empty());
    let mut killed = 0;
    let out = loop {
        if killed == kills {
            break project.wait(child, Duration::from_secs(1800));
        }
        // A random moment, not a synchronisation: where the kill lands is the point.
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        child.kill().expect("kill");
        let out = project.wait(child, Duration::from_secs(60));
        if out.signal != Some(9) {
            // The session ended before the kill reached it.
            break out;
        }
        killed += 1;
        child = project.spawn(&["resume", &id, "--json"], &[]);
    };
    let what = format!("soak seed {seed} ({killed} kills)");
    let out = match out.code {
        0 => out,
        _ => resume_to_end(project, &id, &[], &what),
    };
    assert_eq!(end_of(&out.json()), expected_end(steps), "{what}");
    assert_invariants(&run_dir, &crashy.side, killed as usize, &what);
    // No action outlives its run.
    let pids =
        std::fs::read_to_string(format!("{}.pids", crashy.side.display())).unwrap_or_default();
    for pid in pids.lines().filter_map(|p| p.parse::<u32>().ok()) {
        let gone = poll(Duration::from_secs(10), || {
            (!crate::common::process_alive(pid)).then_some(())
        });
        assert!(
            gone.is_some(),
            "{what}: action process {pid} is still alive"
        );
    }
    eprintln!("{what}: {steps} steps, ok");
}

#[test]
#[ignore = "the soak: run by .ci/run with DLOOP_SOAK_STEPS/DLOOP_SOAK_KILLS, or by hand"]
fn soak_eight_runs_killed_and_resumed_keep_every_invariant() {
    let steps = bound("DLOOP_SOAK_STEPS", 2_000);
    let kills = bound("DLOOP_SOAK_KILLS", 20);
    let threads: Vec<_> = (0..RUNS)
        .map(|i| std::thread::spawn(move || soak_one(0x50a6_0000 + i, steps, kills)))
        .collect();
    for t in threads {
        t.join().expect("a soaked run kept every invariant");
    }
}
