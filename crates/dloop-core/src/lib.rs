//! dloop-core: the domain of dloop, with no I/O.
//!
//! Core owns the loop model and everything that can be decided without touching a file or a
//! process: parsing loop files with `file:line:col` diagnostics, validation, interpolation and
//! shell quoting, the evaluators' verdict logic, the events of a run, [`RunState`] as a fold of
//! those events, and the transition function that says which events follow an action's result.
//! The store (`dloop-store`) persists events; the runtime (`dloop-runtime`) runs actions.
//!
//! # Brief overview
//! - [`model::LoopDef`]: a loop file, as serde reads it (and as `dloop schema` describes it).
//! - [`event::Event`] / [`event::Record`]: one line of a run's log.
//! - [`RunState`]: what a run knows, rebuilt by folding its records.

pub mod diagnostic;
pub mod duration;
pub mod error;
pub mod evaluate;
pub mod event;
pub mod interpolate;
pub mod model;
pub mod parse;
pub mod run_id;
pub mod state;
pub mod timestamp;
pub mod transition;
pub mod validate;

pub use duration::HumanDuration;
pub use event::{Event, Record};
pub use model::LoopDef;
pub use state::RunState;
pub use timestamp::Timestamp;
