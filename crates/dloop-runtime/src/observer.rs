//! How a run's progress reaches the caller: the runtime never prints, it tells a
//! [`RunObserver`], which the CLI implements for its live line and its JSON output.

use dloop_core::state::PendingAction;
use dloop_core::{Record, RunState};

use crate::actions::AgentActivity;
use crate::actions::output::Stream;

/// Receives a run's progress. Every method has a default that does nothing.
pub trait RunObserver {
    /// A record was made durable; `state` includes it (and any later records of its batch).
    fn on_record(&mut self, record: &Record, state: &RunState) {
        let _ = (record, state);
    }

    /// An action is about to be spawned.
    fn on_action_start(&mut self, pending: &PendingAction, state: &RunState) {
        let _ = (pending, state);
    }

    /// The running action printed `bytes` (already on disk in the run's output stream).
    fn on_output(&mut self, stream: Stream, bytes: &[u8]) {
        let _ = (stream, bytes);
    }

    /// The run waits `wait` before its next action (`why`: "delay", "retry backoff", ...).
    fn on_wait(&mut self, wait: std::time::Duration, why: &str) {
        let _ = (wait, why);
    }

    /// The running agent did something (parsed from its stream).
    fn on_agent_activity(&mut self, activity: &AgentActivity) {
        let _ = activity;
    }

    /// A sub-loop's child run (`depth` levels below the observed run) made a record durable in
    /// its own log; `state` is the child's. Its output, waits and agent activity reach the
    /// methods above as the parent's action's.
    fn on_child_record(&mut self, depth: u32, record: &Record, state: &RunState) {
        let _ = (depth, record, state);
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl RunObserver for Silent {}
