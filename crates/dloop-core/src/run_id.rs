//! run_id (being written).
