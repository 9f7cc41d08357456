//! evaluate (being written).
