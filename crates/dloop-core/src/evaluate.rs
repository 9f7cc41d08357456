//! evaluate (being written on branch b-interp; this placeholder holds the shared type).
use serde::{Deserialize, Serialize};
/// What a convergence evaluator remembers between visits of its state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceMemory {
    /// The best metric seen so far.
    pub best: Option<f64>,
    /// Visits since the metric last improved.
    pub since_progress: u32,
}
