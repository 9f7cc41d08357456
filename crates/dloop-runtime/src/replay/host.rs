//! The replay's sub-loop host: a `loop:` step is served from the record like any action.
//!
//! [`ReplayHost`] wraps the session's real [`SubLoopHost`]. While the replay follows the
//! record, a `loop:` call takes the recorded result of its step when the state and the replay
//! key (the loop and its rendered `with:` values) match: the recorded outcome JSON goes through
//! the step's output and the recorded exit code and agent spend are returned, so no child run
//! is created or driven. The first call that does not match is the divergence: without
//! `--live` the step is stopped (the replay pauses there); with `--live` the call, and every
//! later one, goes to the real host, which creates and drives a real child.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use dloop_store::Store;

use super::serve::{Replayer, stopped};
use crate::actions::{ActionIo, ActionOutcome, ActionRequest};
use crate::process::StopLevel;
use crate::subloop::{ChildLoop, SubLoopBundle, SubLoopHost};

/// A [`SubLoopHost`] that answers recorded `loop:` steps (see the module docs).
pub(crate) struct ReplayHost {
    pub(crate) replayer: Arc<Replayer>,
    pub(crate) real: Arc<dyn SubLoopHost>,
}

impl SubLoopHost for ReplayHost {
    fn load(&self, name: &str) -> Result<ChildLoop, String> {
        self.real.load(name)
    }

    // A live replay's run keeps the source's bundle when it replays the source's own
    // definition (`create` copies it): its children then start from it, as the source's did.
    fn bundle_for(&self, parent_run: &str) -> Result<Option<SubLoopBundle>, String> {
        self.real.bundle_for(parent_run)
    }

    fn store(&self) -> &dyn Store {
        self.real.store()
    }

    fn local_dir(&self, run_id: &str) -> dloop_store::Result<PathBuf> {
        self.real.local_dir(run_id)
    }

    fn replayed(
        &self,
        request: &ActionRequest<'_>,
        io: &mut ActionIo<'_, '_>,
    ) -> Option<io::Result<ActionOutcome>> {
        if self.replayer.pause_for(request.pending.step) {
            return Some(Ok(stopped()));
        }
        if !self.replayer.is_live() {
            match self.replayer.serve(request, io) {
                Ok(outcome) => return Some(outcome),
                Err(divergence) => {
                    if !self.replayer.diverge(divergence, StopLevel::Stop) {
                        return Some(Ok(stopped()));
                    }
                }
            }
        }
        // Live from here on: the real host creates and drives the child.
        self.replayer.lock().live_steps.insert(request.pending.step);
        None
    }
}
