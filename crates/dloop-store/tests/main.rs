//! dloop-store's integration tests, one binary (`mod` per area).

mod common;
mod conformance;
