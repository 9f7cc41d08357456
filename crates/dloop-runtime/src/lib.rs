//! dloop-runtime
