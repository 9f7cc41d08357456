//! transition (being written).
