//! RunState: what a run knows, as a fold of its records.
use serde::{Deserialize, Serialize};
/// What a run knows, rebuilt by folding its records (being written).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The seq of the last record applied.
    pub last_seq: u64,
}
impl RunState {
    /// Applies one record.
    pub fn apply(&mut self, record: &crate::event::Record) {
        self.last_seq = record.seq;
    }
}
