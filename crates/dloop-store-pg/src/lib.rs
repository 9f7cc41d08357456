//! dloop-store-pg: the PostgreSQL store, for runs whose state lives in a database that many
//! workers on many machines share (DESIGN.md §10). The file store stays the embedded default.
//!
//! [`PgStore`] implements the same [`Store`] / [`RunHandle`] contract as the file store and
//! passes the same conformance suite (`tests/`), over the tables of [`schema`]. What a
//! database adds, and how each guarantee of `dloop_store` is kept:
//!
//! - **Durability**: an append is one transaction (one commit, so one WAL flush, per step) that
//!   inserts the batch into `events (run_id, seq)` and moves `runs.last_seq` from the seq the
//!   handle expects to the new one; a batch is all-or-nothing because a transaction is.
//! - **Claims are leases**: a handle holds its run by a lease (`lease_token`, the fencing token,
//!   incremented by every claim; `lease_expires_at`, the deadline its heartbeat thread pushes
//!   forward every third of the TTL). Every write of a handle (append, snapshot, blob, output)
//!   checks in the same statement that the token is still its own and the deadline has not
//!   passed, by the database's clock (`clock_timestamp()`), so the writers' clocks never
//!   matter. A write that finds otherwise is refused ([`StoreError::ClaimLost`]) and changes
//!   nothing. A holder that dies simply stops renewing: its runs are free after the TTL.
//! - **Workers**: [`queue::claim`] takes runnable runs (`queue = 'queued'`, unleased or
//!   with an expired lease) in one statement (see [`queue`]).
//! - **Reconnects**: connection failures are retried for [`PgStore::retry_for`] (default
//!   10 s; `crate::conn`); an append whose commit was lost with its connection finds its own
//!   records on retry and returns them, so a restart of the server neither loses nor doubles a
//!   batch. A heartbeat that cannot reach the server before its lease ends calls the lease
//!   lost.
//! - **Limits**: blobs are stored in [`BLOB_CHUNK`] chunks and at most [`BLOB_MAX`] bytes; the
//!   output stream in pieces of at most [`BLOB_CHUNK`]. Connections use no TLS: reach the
//!   server through a unix socket, a private network or a tunnel.
//!
//! URLs are libpq's: `postgres://user@host/db` or, for a unix socket,
//! `postgres:///db?host=/run/postgresql` (the host may be percent-encoded).

mod conn;
mod handle;
mod output;
pub mod queue;
mod read;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;

use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dloop_core::RunState;
use dloop_store::{
    Follow, Incomplete, LoadInfo, LockInfo, RunHandle, RunList, RunMeta, Store, StoreError,
    validate_blob_name, validate_run_id,
};

use crate::conn::Conn;
pub use crate::handle::{LeaseNews, PgRun, Watch};

/// Bytes per stored blob chunk and per output piece.
pub const BLOB_CHUNK: usize = 1 << 20;
/// The largest blob a run may store (definitions and prompts are far smaller).
pub const BLOB_MAX: usize = 64 << 20;
/// Default lease time to live: a dead holder's runs are free this long after its last renewal.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// Who holds the leases a store takes: recorded on the run for `status` and `stop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `run` (a `dloop run`/`resume` process) or `worker`.
    pub kind: &'static str,
    /// A name for humans and logs (`host:pid`, or the worker's name).
    pub owner: String,
    /// The holder's pid.
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
}

impl Holder {
    /// This process, as a `kind` holder.
    pub fn this_process(kind: &'static str) -> Holder {
        let host = host_name();
        let pid = std::process::id();
        Holder {
            kind,
            owner: format!("{host}:{pid}"),
            pid,
            host,
        }
    }
}

/// The machine's host name (as the file store's lock records it).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The PostgreSQL store.
pub struct PgStore {
    config: postgres::Config,
    conn: Arc<Mutex<Conn>>,
    lease_ttl: Duration,
    retry_for: Duration,
    holder: Holder,
    watch: Option<Watch>,
    release_on_drop: bool,
    /// A lease [`queue::claim`] took, handed to the next `open_run` of that run.
    adopt: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("lease_ttl", &self.lease_ttl)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// Parses a store URL into the driver's config.
///
/// # Errors
/// [`StoreError::Database`] naming what is wrong with it.
pub fn parse_url(url: &str) -> dloop_store::Result<postgres::Config> {
    postgres::Config::from_str(url).map_err(|e| StoreError::Database {
        what: format!(
            "`{url}` is not a PostgreSQL URL (postgres://user@host/db, or \
             postgres:///db?host=/socket/dir)"
        ),
        source: Some(Box::new(e)),
    })
}

impl PgStore {
    /// Connects to `url` and checks the schema is this build's (see [`schema::check`]).
    ///
    /// # Errors
    /// A bad URL, an unreachable server (after retries), a schema that is missing, behind or
    /// newer.
    pub fn connect(url: &str) -> dloop_store::Result<PgStore> {
        let config = parse_url(url)?;
        let retry_for = Duration::from_secs(10);
        let mut conn = Conn::connect(&config, retry_for)?;
        conn.run("read the schema version", |c| Ok(schema::check(c)))??;
        Ok(PgStore {
            config,
            conn: Arc::new(Mutex::new(conn)),
            lease_ttl: DEFAULT_LEASE_TTL,
            retry_for,
            holder: Holder::this_process("run"),
            watch: None,
            release_on_drop: true,
            adopt: Mutex::new(None),
        })
    }

    /// Connects to `url` and migrates its schema to this build's version.
    ///
    /// # Errors
    /// An unreachable server, a failed migration, a database newer than this build.
    pub fn migrate(url: &str) -> dloop_store::Result<schema::Migrated> {
        let config = parse_url(url)?;
        let mut conn = Conn::connect(&config, Duration::from_secs(10))?;
        conn.run("migrate the schema", |c| Ok(schema::migrate(c)))?
    }

    /// The same store with leases of `ttl` (default [`DEFAULT_LEASE_TTL`]).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> PgStore {
        self.lease_ttl = ttl.max(Duration::from_millis(100));
        self
    }

    /// The same store, recording `holder` on the leases it takes.
    pub fn with_holder(mut self, holder: Holder) -> PgStore {
        self.holder = holder;
        self
    }

    /// The same store, telling `watch` what the heartbeat of each handle it opens learns (a
    /// lost lease, a stop request).
    pub fn with_watch(mut self, watch: Watch) -> PgStore {
        self.watch = Some(watch);
        self
    }

    /// The same store, whose handles keep their lease when dropped (their heartbeat stops, so
    /// it expires after the TTL) for the caller to release with [`queue::settle`], which
    /// records what became of the run in the same statement: a worker's run is never free
    /// before its queue state says whether it may be taken again.
    pub fn with_release_on_drop(mut self, release: bool) -> PgStore {
        self.release_on_drop = release;
        self
    }

    /// How long connection failures are retried (default 10 s).
    pub fn retry_for(&self) -> Duration {
        self.retry_for
    }

    /// The lease time to live.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// A second store on the same database with its own connection and the same settings
    /// (but no adopted lease), for another thread.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub fn reconnect(&self) -> dloop_store::Result<PgStore> {
        Ok(PgStore {
            config: self.config.clone(),
            conn: Arc::new(Mutex::new(Conn::connect(&self.config, self.retry_for)?)),
            lease_ttl: self.lease_ttl,
            retry_for: self.retry_for,
            holder: self.holder.clone(),
            watch: self.watch.clone(),
            release_on_drop: self.release_on_drop,
            adopt: Mutex::new(None),
        })
    }

    /// Makes the next `open_run(id)` return a handle on the lease [`queue::claim`] took
    /// (token `token`) instead of claiming again.
    pub fn adopt(&self, id: &str, token: i64) {
        *lock(&self.adopt) = Some((id.to_owned(), token));
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Conn> {
        lock(&self.conn)
    }

    fn handle(&self, id: &str, token: i64, last_seq: Option<u64>) -> dloop_store::Result<PgRun> {
        handle::PgRun::new(
            handle::LeaseSpec {
                id: id.to_owned(),
                token,
                ttl: self.lease_ttl,
                config: self.config.clone(),
                retry_for: self.retry_for,
                watch: self.watch.clone(),
                release_on_drop: self.release_on_drop,
            },
            Arc::clone(&self.conn),
            last_seq,
        )
    }

    fn ttl_ms(&self) -> i64 {
        self.lease_ttl.as_millis() as i64
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Prefix of a leftover: a deletion cut short (creation is one transaction, so it cannot be).
const DELETING: &str = ".deleting-";

impl Store for PgStore {
    fn create_run(&self, meta: &RunMeta) -> dloop_store::Result<Box<dyn RunHandle>> {
        validate_run_id(&meta.id)?;
        let json = serde_json::to_string(meta).map_err(|e| StoreError::Database {
            what: format!("cannot encode the metadata of run `{}`", meta.id),
            source: Some(Box::new(e)),
        })?;
        let sha = RunMeta::sha256_hex(&json);
        let h = &self.holder;
        let pid = h.pid as i32;
        let ttl = self.ttl_ms();
        // Idempotent under retries: a retry (after a connection failure that may have lost the
        // commit's answer) that finds the row with this holder's first lease and the same
        // metadata takes it as its own; a first attempt that finds a row does not.
        let mut attempts = 0;
        let token = self.conn().run("create a run", |c| {
            attempts += 1;
            let n = c.execute(
                "INSERT INTO runs (id, meta, meta_sha256, lease_token, lease_kind, lease_owner,
                     lease_pid, lease_host, lease_started_at, lease_expires_at)
                 VALUES ($1, $2, $3, 1, $4, $5, $6, $7, clock_timestamp(),
                     clock_timestamp() + $8::bigint * interval '1 millisecond')
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &meta.id, &json, &sha, &h.kind, &h.owner, &pid, &h.host, &ttl,
                ],
            )?;
            if n == 1 {
                return Ok(Some(1_i64));
            }
            if attempts == 1 {
                return Ok(None);
            }
            let row = c.query_opt(
                "SELECT lease_token FROM runs WHERE id = $1 AND meta_sha256 = $2
                   AND lease_owner = $3 AND last_seq = 0 AND lease_token = 1",
                &[&meta.id, &sha, &h.owner],
            )?;
            Ok(row.map(|r| r.get(0)))
        })?;
        let Some(token) = token else {
            return Err(StoreError::AlreadyExists {
                run_id: meta.id.clone(),
            });
        };
        Ok(Box::new(self.handle(&meta.id, token, Some(0))?))
    }

    fn open_run(&self, id: &str) -> dloop_store::Result<Box<dyn RunHandle>> {
        validate_run_id(id)?;
        let adopted = {
            let mut adopt = lock(&self.adopt);
            match adopt.as_ref() {
                Some((a, _)) if a == id => adopt.take().map(|(_, t)| t),
                _ => None,
            }
        };
        if let Some(token) = adopted {
            return Ok(Box::new(self.handle(id, token, None)?));
        }
        let h = &self.holder;
        let pid = h.pid as i32;
        let ttl = self.ttl_ms();
        let token = self.conn().run("claim a run", |c| {
            let row = c.query_opt(
                "UPDATE runs SET lease_token = lease_token + 1, lease_kind = $2,
                     lease_owner = $3, lease_pid = $4, lease_host = $5,
                     lease_started_at = clock_timestamp(),
                     lease_expires_at = clock_timestamp() + $6::bigint * interval '1 millisecond'
                 WHERE id = $1 AND NOT deleting
                   AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())
                 RETURNING lease_token",
                &[&id, &h.kind, &h.owner, &pid, &h.host, &ttl],
            )?;
            Ok(row.map(|r| r.get::<_, i64>(0)))
        })?;
        match token {
            Some(token) => Ok(Box::new(self.handle(id, token, None)?)),
            None => match read::row_lease(self, id)? {
                Some((true, _)) => Err(StoreError::NotFound {
                    run_id: id.to_owned(),
                }),
                Some((false, holder)) => Err(StoreError::AlreadyLive {
                    run_id: id.to_owned(),
                    pid: holder.map(|h| h.pid),
                }),
                None => Err(StoreError::NotFound {
                    run_id: id.to_owned(),
                }),
            },
        }
    }

    fn run_ids(&self) -> dloop_store::Result<Vec<String>> {
        self.conn().run("list runs", |c| {
            let rows = c.query(
                "SELECT id FROM runs WHERE NOT deleting ORDER BY id COLLATE \"C\"",
                &[],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn list_runs(&self) -> dloop_store::Result<RunList> {
        read::list_runs(self)
    }

    fn read_meta(&self, id: &str) -> dloop_store::Result<RunMeta> {
        read::read_meta(self, id)
    }

    fn load_state(&self, id: &str) -> dloop_store::Result<(RunState, LoadInfo)> {
        validate_run_id(id)?;
        read::load_state(&mut self.conn(), id)
    }

    fn is_live(&self, id: &str) -> dloop_store::Result<bool> {
        validate_run_id(id)?;
        Ok(self.holder(id)?.is_some())
    }

    fn holder(&self, id: &str) -> dloop_store::Result<Option<LockInfo>> {
        validate_run_id(id)?;
        match read::row_lease(self, id)? {
            Some((false, holder)) => Ok(holder),
            _ => Ok(None),
        }
    }

    fn records_from(&self, id: &str, seq: u64) -> dloop_store::Result<dloop_store::Records> {
        validate_run_id(id)?;
        read::exists(&mut self.conn(), id)?;
        Ok(read::records(Arc::clone(&self.conn), id, seq))
    }

    fn follow(&self, id: &str, after_seq: u64) -> dloop_store::Result<Box<dyn Follow>> {
        validate_run_id(id)?;
        read::exists(&mut self.conn(), id)?;
        Ok(Box::new(read::PgFollow {
            conn: Arc::clone(&self.conn),
            id: id.to_owned(),
            after_seq,
        }))
    }

    fn get_blob(&self, id: &str, name: &str) -> dloop_store::Result<Option<Vec<u8>>> {
        validate_run_id(id)?;
        validate_blob_name(name)?;
        read::get_blob(&mut self.conn(), id, name)
    }

    fn read_output(
        &self,
        id: &str,
        from: u64,
        to: Option<u64>,
    ) -> dloop_store::Result<(Vec<u8>, u64)> {
        validate_run_id(id)?;
        output::read(&mut self.conn(), id, from, to)
    }

    fn remove_incomplete(&self, name: &str) -> dloop_store::Result<bool> {
        let Some(id) = name.strip_prefix(DELETING) else {
            return Ok(false);
        };
        validate_run_id(id)?;
        self.conn().run("finish a deletion", |c| {
            let n = c.execute(
                "DELETE FROM runs WHERE id = $1 AND deleting
                   AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())",
                &[&id],
            )?;
            Ok(n == 1)
        })
    }

    fn queued_runs(&self) -> dloop_store::Result<Vec<String>> {
        self.conn().run("list queued runs", |c| {
            let rows = c.query(
                "SELECT id FROM runs WHERE queue = 'queued' AND NOT deleting
                   AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())
                 ORDER BY id COLLATE \"C\"",
                &[],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn request_stop(&self, id: &str, drain: bool) -> dloop_store::Result<bool> {
        validate_run_id(id)?;
        let level = if drain { "drain" } else { "stop" };
        // A local `dloop run` on this machine is signalled instead (it reacts at once); any
        // other holder reads the request at its next heartbeat.
        let host = host_name();
        let carried = self.conn().run("request a stop", |c| {
            let row = c.query_opt(
                "UPDATE runs SET stop_requested = CASE
                     WHEN stop_requested = 'stop' THEN 'stop' ELSE $2 END
                 WHERE id = $1 AND lease_expires_at > clock_timestamp()
                 RETURNING lease_kind <> 'run' OR lease_host <> $3",
                &[&id, &level, &host],
            )?;
            Ok(row.map(|r| r.get::<_, bool>(0)))
        })?;
        Ok(carried.unwrap_or(false))
    }
}

impl PgStore {
    /// The leftovers (deletions cut short) for [`RunList::incomplete`].
    pub(crate) fn incomplete(&self) -> dloop_store::Result<Vec<Incomplete>> {
        self.conn().run("list leftovers", |c| {
            let rows = c.query(
                "SELECT id, coalesce(lease_expires_at > clock_timestamp(), false)
                 FROM runs WHERE deleting ORDER BY id COLLATE \"C\"",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| Incomplete {
                    name: format!("{DELETING}{}", r.get::<_, String>(0)),
                    why: "a deletion cut short".to_owned(),
                    busy: r.get(1),
                })
                .collect())
        })
    }
}
