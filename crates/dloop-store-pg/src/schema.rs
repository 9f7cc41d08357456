//! The database schema and its migrations: versioned, forward-only, applied by `dloop db
//! migrate` ([`migrate`]) under an advisory lock so two migrators never interleave, and refused
//! by every other command while the database is behind ([`check`]) or ahead of this version.
//! History: version 1 (this issue): the tables below.
//!
//! Invariants: a migration is never edited once released (a change is a new migration);
//! [`MIGRATIONS`]`[i]` takes the database from version `i` to `i + 1`; the version row and the
//! migration it records commit in one transaction.
//!
//! Tables (version 1):
//! - `runs`: one row per run: its metadata (`run.json`'s JSON and its SHA-256), `last_seq`, the
//!   snapshot (JSON, its seq and CRC32C), the output stream's length, the queue state for
//!   workers (`queue`: NULL for a run a local `dloop run` drives, `queued` runnable by any
//!   worker, `held` paused until a person resumes it, `done`), and the lease: `lease_token`
//!   (the fencing token, incremented by every claim), holder (`lease_kind`, `lease_owner`,
//!   `lease_pid`, `lease_host`, `lease_started_at`), `lease_expires_at` (the deadline a
//!   heartbeat pushes forward), `stop_requested` (`stop` or `drain`, for `dloop stop` from any
//!   machine). `deleting` marks a deletion cut short.
//! - `events (run_id, seq)`: the log; `record` is the record's JSON (the file store's line
//!   without its checksum: the database checksums its pages).
//! - `blobs (run_id, name, chunk)`: named blobs in chunks of [`crate::BLOB_CHUNK`] bytes.
//! - `outputs (run_id, off)`: the output stream in pieces, each at its byte offset.

use postgres::Client;

use crate::conn::db_error;
use dloop_store::{Result, StoreError};

/// The schema version this build reads and writes.
pub const LATEST: i32 = 1;

/// Key of the advisory lock `migrate` holds (any constant; "dloop" in ASCII).
const MIGRATE_LOCK: i64 = 0x0064_6c6f_6f70;

/// Each migration's SQL, from version `i` to `i + 1`.
const MIGRATIONS: [&str; LATEST as usize] = [r"
CREATE TABLE runs (
    id               text PRIMARY KEY,
    meta             text NOT NULL,
    meta_sha256      text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_seq         bigint NOT NULL DEFAULT 0,
    snapshot         text,
    snapshot_seq     bigint,
    snapshot_crc     bigint,
    output_len       bigint NOT NULL DEFAULT 0,
    deleting         boolean NOT NULL DEFAULT false,
    queue            text CHECK (queue IN ('queued', 'held', 'done')),
    queued_at        timestamptz,
    lease_token      bigint NOT NULL DEFAULT 0,
    lease_kind       text,
    lease_owner      text,
    lease_pid        integer,
    lease_host       text,
    lease_started_at timestamptz,
    lease_expires_at timestamptz,
    stop_requested   text CHECK (stop_requested IN ('stop', 'drain'))
);
-- When each queued run became claimable: its queue time, or the deadline of its lease. The
-- claim reads this index from the oldest key up to now, so it never scans a live lease.
CREATE INDEX runs_claimable ON runs ((coalesce(lease_expires_at, queued_at)))
    WHERE queue = 'queued';
CREATE TABLE events (
    run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq    bigint NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE blobs (
    run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name   text NOT NULL,
    chunk  integer NOT NULL,
    data   bytea NOT NULL,
    PRIMARY KEY (run_id, name, chunk)
);
CREATE TABLE outputs (
    run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    off    bigint NOT NULL,
    data   bytea NOT NULL,
    PRIMARY KEY (run_id, off)
);
"];

/// The database's schema version: 0 when dloop never migrated it.
pub fn version(client: &mut Client) -> Result<i32> {
    let row = client
        .query_one("SELECT to_regclass('dloop_schema') IS NOT NULL", &[])
        .map_err(|e| db_error("read the schema version", e))?;
    if !row.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = client
        .query_opt("SELECT version FROM dloop_schema", &[])
        .map_err(|e| db_error("read the schema version", e))?;
    Ok(row.map_or(0, |r| r.get(0)))
}

/// Refuses a database this build cannot use: not migrated, behind, or newer.
pub fn check(client: &mut Client) -> Result<()> {
    let found = version(client)?;
    if found == LATEST {
        return Ok(());
    }
    let what = if found > LATEST {
        format!(
            "the database's schema is version {found}, newer than this dloop's ({LATEST}); \
             upgrade dloop"
        )
    } else {
        format!(
            "the database's schema is version {found}, this dloop needs {LATEST}; run \
             `dloop db migrate --store URL`"
        )
    };
    Err(StoreError::Database { what, source: None })
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The version found.
    pub from: i32,
    /// The version now.
    pub to: i32,
}

/// Brings the schema to [`LATEST`] in one transaction (every pending migration and the new
/// version commit together, or nothing does), under an advisory lock.
/// Refuses a database whose version is newer than this build's (forward-only: nothing is
/// ever undone).
pub fn migrate(client: &mut Client) -> Result<Migrated> {
    let err = |e| db_error("migrate the schema", e);
    let mut tx = client.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .map_err(err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS dloop_schema (
             one boolean PRIMARY KEY DEFAULT true CHECK (one),
             version integer NOT NULL)",
    )
    .map_err(err)?;
    let from: i32 = tx
        .query_opt("SELECT version FROM dloop_schema", &[])
        .map_err(err)?
        .map_or(0, |r| r.get(0));
    if from > LATEST {
        return Err(StoreError::Database {
            what: format!(
                "the database's schema is version {from}, newer than this dloop's ({LATEST}); \
                 refusing to migrate backwards: upgrade dloop"
            ),
            source: None,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.batch_execute(sql).map_err(err)?;
        let to = i as i32 + 1;
        tx.execute(
            "INSERT INTO dloop_schema (version) VALUES ($1)
             ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version",
            &[&to],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)?;
    Ok(Migrated { from, to: LATEST })
}
