//! dloop-store
