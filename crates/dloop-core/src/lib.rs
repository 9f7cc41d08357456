//! dloop-core: the domain of dloop, with no I/O.
//!
//! Core owns the loop model and everything that can be decided without touching a file or a
//! process: parsing loop files with `file:line:col` diagnostics, validation, interpolation (shell
//! actions rendered so that values are never code), the evaluators' verdict logic, the events of
//! a run, [`RunState`] as a fold of those events, and the transition function that says which
//! events follow an action's result.
//! The store (`dloop-store`) persists events; the runtime (`dloop-runtime`) runs actions.
//!
//! # Brief overview
//! - [`model::LoopDef`]: a loop file, as serde reads it (and as `dloop schema` describes it).
//! - [`event::Event`] / [`event::Record`]: one line of a run's log.
//! - [`RunState`]: what a run knows, rebuilt by folding its records.
//! - [`transition::next`]: given a loop and a state, the one thing that happens next.
//!
//! # Example
//!
//! ```
//! use dloop_core::transition::{next, Decision};
//! use dloop_core::{Event, Record, RunState, Timestamp};
//!
//! let yaml = b"
//! initial: check
//! states:
//!   check:
//!     shell: make test
//!     on: { success: done, failure: done }
//!   done:
//!     terminal: success
//! ";
//! let def = dloop_core::parse::parse_loop(yaml).expect("valid loop").def;
//! let started = Record {
//!     seq: 1,
//!     ts: Timestamp::from_millis(0),
//!     event: Event::RunStarted {
//!         run_id: "check-20261121T000000-00ab".into(),
//!         loop_name: "check".into(),
//!         definition_sha256: String::new(),
//!         initial: "check".into(),
//!         context: Default::default(),
//!         max_steps: 100,
//!         timeout_ms: None,
//!         delay_ms: None,
//!     },
//! };
//! let state = RunState::from_records([&started]);
//! // The first thing a new run does is enter its initial state.
//! assert!(matches!(
//!     next(&def, &state, Timestamp::from_millis(1)),
//!     Decision::Record(Event::StateEntered { ref state, step: 1, .. }) if state == "check"
//! ));
//! ```

pub mod budget;
pub mod config;
pub mod diagnostic;
pub mod duration;
pub mod error;
pub mod evaluate;
pub mod event;
pub mod interpolate;
pub mod judge;
pub mod model;
pub mod parse;
pub mod ratelimit;
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
