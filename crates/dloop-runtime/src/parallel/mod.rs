//! `dloop parallel`: one run of a loop per task, each in its own worktree, and their branches
//! brought back to a target branch without losing any.
//!
//! [`state`] is the coordinator's durable record (a versioned JSON file, migrated forward on
//! load); [`integrate`] is the integration protocol. The coordinator's loop (starting workers
//! as background runs, watching them through the store) is the CLI's `parallel` command.

pub mod integrate;
pub mod state;
