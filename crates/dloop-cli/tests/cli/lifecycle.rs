//! Lifecycle edges of the real binary: long runs, stop, drain, force, Ctrl-C, timeouts,
//! resume with its counters and context, torn and corrupt logs, hostile output, huge output,
//! and runs started at once.
