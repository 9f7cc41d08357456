//! Runtime integration tests: real processes, real files. One test binary; one module per area.

mod common;
mod drive;
