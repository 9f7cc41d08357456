//! dloop-runtime: drives runs.
//!
//! The runtime owns everything that touches processes: running actions in their own process
//! groups with timeouts, turning signals into stop requests, taking the run lock, and the step
//! loop that asks `dloop_core::transition::next` what to do and persists each step through
//! `dloop-store` before the next side effect. It never prints: progress reaches the caller
//! through [`observer::RunObserver`].
//!
//! # Brief overview
//! - [`runs::start_run`] and [`runs::resume_run`]: begin or continue a run and drive it.
//! - [`driver::Session`]: the step loop over one locked run.
//! - [`actions::ActionRunner`]: the seam every kind of action runs through;
//!   [`actions::shell::ShellRunner`] runs `shell:` actions.
//! - [`process::run_process`]: one action process, with timeouts, stop handling and job
//!   control; [`reaper`] makes sure nothing of it outlives its step.
//! - [`scope`]: scope locks and the wait queue between runs of one project.
//! - [`clock::Clock`]: time, injected ([`clock::ManualClock`] in tests).
//! - [`replay::replay_run`]: re-execute a recorded run against a definition, reusing results.

pub mod actions;
pub mod agent_runners;
pub mod checkpoint;
pub mod clock;
pub mod driver;
pub mod error;
pub mod fork;
pub mod git;
pub mod interp;
pub mod observer;
pub mod parallel;
pub mod process;
pub mod reaper;
pub mod replay;
pub mod rewind;
pub mod runs;
pub mod scope;
pub mod signals;
pub mod subloop;
pub mod worktree;

pub use error::{RuntimeError, RuntimeErrorKind};
