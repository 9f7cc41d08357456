//! PgStore's tests against a real PostgreSQL server (`dloop_store_pg::testing`): the store
//! conformance suite, fencing, reconnects. Each test takes its own database on the binary's
//! shared server; the restart test starts a server of its own.

mod conformance;
mod fencing;
