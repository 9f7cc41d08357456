//! Time-dependent behaviour on an injected clock: delays, a stop during a delay, and resume
//! waiting only what is left, asserted exactly and without waiting for real.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dloop_core::Timestamp;
use dloop_core::event::Event;
use dloop_core::state::RunStatus;
use dloop_runtime::clock::{Clock, ManualClock};
use dloop_runtime::observer::Silent;
use dloop_runtime::process::{StopFlag, StopLevel};
use dloop_runtime::runs::{ResumeInput, resume_run};
use dloop_store::Store;

use crate::common::Project;

const DELAYED: &str = "initial: a\ndelay: 6s\nstates:\n  a:\n    shell: echo a >> \"$DLOOP_RUN_DIR/trail\"\n    next: b\n  b:\n    shell: echo b >> \"$DLOOP_RUN_DIR/trail\"\n    next: done\n  done:\n    terminal: success\n";

/// A manual clock that records what it was asked to sleep, and can raise a stop request the
/// first time something sleeps on it (as a `dloop stop` arriving during a delay would).
struct ScriptedClock {
    inner: ManualClock,
    slept: Mutex<Vec<Duration>>,
    stop_on_sleep: Option<Arc<StopFlag>>,
}

impl Clock for ScriptedClock {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration, interrupted: &dyn Fn() -> bool) {
        self.slept.lock().expect("lock").push(duration);
        if let Some(stop) = &self.stop_on_sleep {
            stop.raise(StopLevel::Stop);
        }
        self.inner.sleep(duration, interrupted);
    }
}

fn action_starts(project: &Project, run_id: &str) -> Vec<u64> {
    project
        .store()
        .records_from(run_id, 1)
        .expect("readable")
        .map(|r| r.expect("valid"))
        .filter(|r| matches!(r.event, Event::ActionStarted { .. }))
        .map(|r| r.ts.as_millis())
        .collect()
}

#[test]
fn a_six_second_delay_spaces_the_steps_on_the_injected_clock() {
    let project = Project::new();
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
    let mut options = project.options();
    options.clock = clock.clone();
    let end = project.run_with(DELAYED, options);
    assert_eq!(end.status, RunStatus::Completed);
    let starts = action_starts(&project, &end.run_id);
    assert_eq!(starts.len(), 2);
    // The clock stands still while the actions run, so the gap is exactly the delay.
    assert_eq!(starts[1] - starts[0], 6_000);
}

#[test]
fn a_stop_during_a_delay_pauses_at_once_and_resume_waits_only_what_is_left() {
    let project = Project::new();
    let stop = Arc::new(StopFlag::default());
    let clock = Arc::new(ScriptedClock {
        inner: ManualClock::new(Timestamp::from_millis(1_000_000)),
        slept: Mutex::new(Vec::new()),
        stop_on_sleep: Some(Arc::clone(&stop)),
    });
    let mut options = project.options();
    options.clock = clock.clone();
    options.stop = stop;
    let end = project.run_with(DELAYED, options);
    assert_eq!(end.status, RunStatus::Paused);
    assert_eq!(
        *clock.slept.lock().expect("lock"),
        vec![Duration::from_secs(6)]
    );
    assert_eq!(
        action_starts(&project, &end.run_id).len(),
        1,
        "step 2 did not start"
    );
    let trail = std::fs::read_to_string(project.work_file(&end.run_id, "trail")).expect("trail");
    assert_eq!(trail, "a\n");

    // Two seconds later, resume waits the four that are left, then runs step 2.
    let later = Arc::new(ScriptedClock {
        inner: ManualClock::new(Timestamp::from_millis(clock.now().as_millis() + 2_000)),
        slept: Mutex::new(Vec::new()),
        stop_on_sleep: None,
    });
    let mut options = project.options();
    options.clock = later.clone();
    let input = ResumeInput {
        run_id: end.run_id.clone(),
        ..ResumeInput::default()
    };
    let store = project.store();
    let local_dir = |id: &str| store.local_run_dir(id);
    let resumed = resume_run(&store, &local_dir, &input, options, &mut Silent).expect("resumes");
    assert_eq!(resumed.status, RunStatus::Completed);
    assert_eq!(
        *later.slept.lock().expect("lock"),
        vec![Duration::from_secs(4)]
    );
    let trail = std::fs::read_to_string(project.work_file(&end.run_id, "trail")).expect("trail");
    assert_eq!(trail, "a\nb\n", "each step ran once");
}
