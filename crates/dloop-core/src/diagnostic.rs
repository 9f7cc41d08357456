//! diagnostic (being written).
