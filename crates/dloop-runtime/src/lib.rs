//! dloop-runtime: drives runs.
//!
//! The runtime owns everything that touches processes: running actions in their own process
//! groups with timeouts, turning signals into stop requests, taking locks, and the step loop
//! that asks `dloop_core::transition::next` what to do and persists each step through
//! `dloop-store` before the next side effect. It never prints: progress reaches the caller
//! through [`observer::RunObserver`].

pub mod process;
pub mod signals;
