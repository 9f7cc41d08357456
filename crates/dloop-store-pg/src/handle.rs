//! The writer's handle on one run ([`PgRun`]): holds the run's lease, renews it from a heartbeat
//! thread, and fences every write with it.
//!
//! Invariants:
//! - every write names the lease token in its own statement (`WHERE id = $1 AND lease_token =
//!   $2 AND lease_expires_at > clock_timestamp()`), so a holder whose lease expired or was taken
//!   (a GC pause, a partition, SIGSTOP) has its next write refused with
//!   [`StoreError::ClaimLost`], and nothing of that write lands;
//! - an append moves `runs.last_seq` from the seq this handle last wrote, in the transaction
//!   that inserts the records, so two writers can never interleave a log even with one token;
//! - the heartbeat renews the lease every third of its TTL, only while it is still live and
//!   this handle's; it reports a lost lease and stop requests to the store's [`Watch`], and calls
//!   the lease lost when it cannot reach the server before the lease would have ended;
//! - dropping the handle stops the heartbeat and releases the lease at once (so a worker that
//!   is told to stop hands its runs over without waiting for the TTL).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dloop_core::{Event, Record, RunState, Timestamp};
use dloop_store::{LoadInfo, OutputStream, Records, Result, RunHandle, StoreError};

use crate::conn::Conn;
use crate::output::PgOutput;
use crate::read;
use crate::{BLOB_CHUNK, BLOB_MAX, lock};

/// What a handle's heartbeat learned about its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseNews {
    /// The lease expired or was taken: stop acting for the run (its writes are refused).
    Lost,
    /// Someone asked the run to stop (`dloop stop`), after its current action when `drain`.
    Stop {
        /// Let the current action finish first.
        drain: bool,
    },
}

/// Told about each run's [`LeaseNews`] (run id first), from the heartbeat thread.
pub type Watch = Arc<dyn Fn(&str, LeaseNews) + Send + Sync>;

/// The fence of every write: the lease is this token's and still live by the server's clock.
pub(crate) const FENCE: &str =
    "id = $1 AND lease_token = $2 AND lease_expires_at > clock_timestamp()";

/// What a new handle needs to hold and renew its lease.
pub(crate) struct LeaseSpec {
    pub(crate) id: String,
    pub(crate) token: i64,
    pub(crate) ttl: Duration,
    pub(crate) config: postgres::Config,
    pub(crate) retry_for: Duration,
    pub(crate) watch: Option<Watch>,
    pub(crate) release_on_drop: bool,
}

/// The handle on one run of a [`crate::PgStore`].
pub struct PgRun {
    id: String,
    token: i64,
    conn: Arc<Mutex<Conn>>,
    last_seq: Option<u64>,
    poisoned: bool,
    lost: Arc<AtomicBool>,
    heartbeat: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    released: bool,
}

impl std::fmt::Debug for PgRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRun")
            .field("id", &self.id)
            .field("token", &self.token)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl PgRun {
    pub(crate) fn new(
        spec: LeaseSpec,
        conn: Arc<Mutex<Conn>>,
        last_seq: Option<u64>,
    ) -> Result<PgRun> {
        let lost = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let id = spec.id.clone();
        let token = spec.token;
        let released = !spec.release_on_drop;
        let flag = Arc::clone(&lost);
        let thread = std::thread::Builder::new()
            .name(format!("lease-{id}"))
            .spawn(move || heartbeat(&spec, &rx, &flag))
            .map_err(|e| StoreError::Database {
                what: "cannot start a lease heartbeat thread".to_owned(),
                source: Some(Box::new(e)),
            })?;
        Ok(PgRun {
            id,
            token,
            conn,
            last_seq,
            poisoned: false,
            lost,
            heartbeat: Some((tx, thread)),
            released,
        })
    }

    /// The lease's fencing token.
    pub fn token(&self) -> i64 {
        self.token
    }

    fn claim_lost(&self, why: &str) -> StoreError {
        self.lost.store(true, Ordering::SeqCst);
        StoreError::ClaimLost {
            run_id: self.id.clone(),
            why: why.to_owned(),
        }
    }

    fn writable(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(self.claim_lost("its lease expired or was taken by another holder"));
        }
        if self.poisoned {
            return Err(StoreError::Poisoned {
                path: read::log_name(&self.id),
            });
        }
        Ok(())
    }

    /// Runs a fenced statement that must touch the run's row; 0 rows: the lease is gone.
    fn fenced(&self, what: &str, sql: &str) -> Result<()> {
        let (id, token) = (self.id.as_str(), self.token);
        let n = lock(&self.conn).run(what, |c| c.execute(sql, &[&id, &token]))?;
        if n == 0 {
            return Err(self.claim_lost("its lease expired or was taken by another holder"));
        }
        Ok(())
    }

    fn stop_heartbeat(&mut self) {
        if let Some((tx, thread)) = self.heartbeat.take() {
            let _ = tx.send(());
            drop(thread.join());
        }
    }
}

/// What an append attempt found.
enum Appended {
    Committed,
    Refused,
}

impl RunHandle for PgRun {
    fn id(&self) -> &str {
        &self.id
    }

    fn load_state(&mut self) -> Result<(RunState, LoadInfo)> {
        let (state, info) = read::load_state(&mut lock(&self.conn), &self.id)?;
        self.last_seq = Some(state.last_seq);
        Ok((state, info))
    }

    fn append(&mut self, events: &[Event], now: Timestamp) -> Result<Vec<Record>> {
        let Some(last) = self.last_seq else {
            return Err(StoreError::NotLoaded {
                run_id: self.id.clone(),
            });
        };
        self.writable()?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Record> = events
            .iter()
            .enumerate()
            .map(|(i, event)| Record {
                seq: last + 1 + i as u64,
                ts: now,
                event: event.clone(),
            })
            .collect();
        let mut texts = Vec::with_capacity(records.len());
        for r in &records {
            texts.push(
                serde_json::to_string(r).map_err(|source| StoreError::Encode {
                    path: read::log_name(&self.id),
                    source,
                })?,
            );
        }
        let seqs: Vec<i64> = records.iter().map(|r| r.seq as i64).collect();
        let (old, new) = (last as i64, last as i64 + records.len() as i64);
        let (id, token) = (self.id.as_str(), self.token);
        // One statement, so one transaction and one commit (one WAL flush) for the whole
        // batch, in two round trips: the fenced move of last_seq feeds the insert, which
        // inserts nothing when the fence or the expected seq fails.
        let sql = format!(
            "WITH moved AS (
                 UPDATE runs SET last_seq = $3 WHERE {FENCE} AND last_seq = $4 RETURNING id)
             INSERT INTO events (run_id, seq, record)
             SELECT moved.id, t.s, t.r FROM moved, unnest($5::bigint[], $6::text[]) AS t(s, r)"
        );
        // Safe to repeat: a retry after a commit whose answer was lost finds last_seq moved
        // and its own records there.
        let outcome = lock(&self.conn).run_prepared("append records", &sql, |c, statement| {
            if c.execute(statement, &[&id, &token, &new, &old, &seqs, &texts])? > 0 {
                return Ok(Appended::Committed);
            }
            let stored = c.query(
                "SELECT record FROM events WHERE run_id = $1 AND seq > $2 AND seq <= $3
                 ORDER BY seq",
                &[&id, &old, &new],
            )?;
            let ours = stored.len() == texts.len()
                && stored
                    .iter()
                    .zip(&texts)
                    .all(|(row, text)| row.get::<_, &str>(0) == text.as_str());
            let at_end = c
                .query_opt("SELECT last_seq FROM runs WHERE id = $1", &[&id])?
                .is_some_and(|r| r.get::<_, i64>(0) == new);
            Ok(if ours && at_end {
                Appended::Committed
            } else {
                Appended::Refused
            })
        });
        match outcome {
            Ok(Appended::Committed) => {
                self.last_seq = Some(new as u64);
                Ok(records)
            }
            Ok(Appended::Refused) => {
                Err(self.claim_lost("its lease expired or was taken by another holder"))
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }

    fn save_snapshot(&mut self, state: &RunState) -> Result<()> {
        self.writable()?;
        let text = serde_json::to_string(state).map_err(|source| StoreError::EncodeSnapshot {
            path: read::log_name(&self.id),
            source,
        })?;
        let crc = i64::from(crc32c::crc32c(text.as_bytes()));
        let seq = state.last_seq as i64;
        let (id, token) = (self.id.as_str(), self.token);
        let sql = format!(
            "UPDATE runs SET snapshot = $3, snapshot_seq = $4, snapshot_crc = $5 WHERE {FENCE}"
        );
        let n = lock(&self.conn).run("save a snapshot", |c| {
            c.execute(sql.as_str(), &[&id, &token, &text, &seq, &crc])
        })?;
        if n == 0 {
            return Err(self.claim_lost("its lease expired or was taken by another holder"));
        }
        Ok(())
    }

    fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    fn records_from(&self, seq: u64) -> Result<Records> {
        Ok(read::records(Arc::clone(&self.conn), &self.id, seq))
    }

    fn put_blob(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        dloop_store::validate_blob_name(name)?;
        self.writable()?;
        if bytes.len() > BLOB_MAX {
            return Err(StoreError::Database {
                what: format!(
                    "blob `{name}` of run `{}` is {} bytes; the PostgreSQL store keeps at most {BLOB_MAX}",
                    self.id,
                    bytes.len()
                ),
                source: None,
            });
        }
        let (id, token) = (self.id.as_str(), self.token);
        let fence = format!("UPDATE runs SET id = id WHERE {FENCE}");
        // Replacing is idempotent, so a retry after a lost commit is harmless.
        let held = lock(&self.conn).run("store a blob", |c| {
            let mut tx = c.transaction()?;
            if tx.execute(fence.as_str(), &[&id, &token])? == 0 {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM blobs WHERE run_id = $1 AND name = $2",
                &[&id, &name],
            )?;
            for (i, chunk) in bytes.chunks(BLOB_CHUNK).enumerate() {
                tx.execute(
                    "INSERT INTO blobs (run_id, name, chunk, data) VALUES ($1, $2, $3, $4)",
                    &[&id, &name, &(i as i32), &chunk],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })?;
        if !held {
            return Err(self.claim_lost("its lease expired or was taken by another holder"));
        }
        Ok(())
    }

    fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>> {
        dloop_store::validate_blob_name(name)?;
        read::get_blob(&mut lock(&self.conn), &self.id, name)
    }

    fn open_output(&mut self) -> Result<Box<dyn OutputStream>> {
        self.writable()?;
        Ok(Box::new(PgOutput::open(
            Arc::clone(&self.conn),
            &self.id,
            self.token,
            Arc::clone(&self.lost),
        )?))
    }

    fn read_output(&self, from: u64, to: Option<u64>) -> Result<(Vec<u8>, u64)> {
        crate::output::read(&mut lock(&self.conn), &self.id, from, to)
    }

    fn check_claim(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(self.claim_lost("its lease expired or was taken by another holder"));
        }
        let (id, token) = (self.id.as_str(), self.token);
        let held = lock(&self.conn).run("check a lease", |c| {
            let row = c.query_opt(&format!("SELECT 1 FROM runs WHERE {FENCE}"), &[&id, &token])?;
            Ok(row.is_some())
        })?;
        if held {
            Ok(())
        } else {
            Err(self.claim_lost("its lease expired or was taken by another holder"))
        }
    }

    fn delete(mut self: Box<Self>) -> Result<()> {
        self.writable()?;
        self.stop_heartbeat();
        // Two steps, so a deletion cut short is visible (a `.deleting-` leftover) and the
        // runs listing never shows a run half gone.
        self.fenced(
            "mark a run deleted",
            &format!("UPDATE runs SET deleting = true WHERE {FENCE}"),
        )?;
        let id = self.id.clone();
        lock(&self.conn).run("delete a run", |c| {
            c.execute("DELETE FROM runs WHERE id = $1 AND deleting", &[&id])
        })?;
        self.released = true;
        Ok(())
    }
}

impl Drop for PgRun {
    fn drop(&mut self) {
        self.stop_heartbeat();
        if self.released {
            return;
        }
        let (id, token) = (self.id.as_str(), self.token);
        // Best effort: a holder that cannot reach the server leaves the lease to expire.
        drop(lock(&self.conn).run("release a lease", |c| {
            c.execute(
                "UPDATE runs SET lease_expires_at = NULL, lease_kind = NULL, lease_owner = NULL,
                     lease_pid = NULL, lease_host = NULL, lease_started_at = NULL,
                     stop_requested = NULL
                 WHERE id = $1 AND lease_token = $2",
                &[&id, &token],
            )
        }));
    }
}

/// The heartbeat thread: renews the lease every third of its TTL until told to stop (a message
/// or the sender dropped), the lease is lost, or the server stays out of reach past the lease.
fn heartbeat(spec: &LeaseSpec, rx: &mpsc::Receiver<()>, lost: &AtomicBool) {
    let interval = spec.ttl / 3;
    let ttl_ms = spec.ttl.as_millis() as i64;
    let mut conn = Conn::lazy(&spec.config, spec.retry_for);
    let mut renewed = Instant::now();
    let mut told_stop: Option<bool> = None;
    let sql = format!(
        "UPDATE runs SET lease_expires_at = clock_timestamp() + $3::bigint * interval '1 millisecond'
         WHERE {FENCE} RETURNING stop_requested"
    );
    let tell = |news| {
        if let Some(watch) = &spec.watch {
            watch(&spec.id, news);
        }
    };
    loop {
        match rx.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let attempt = Instant::now();
        let left = (renewed + spec.ttl).saturating_duration_since(attempt);
        // Never retry past the lease: by then another holder may have it.
        conn.retry_for = left;
        let renewal = conn.run_prepared("renew a lease", &sql, |c, statement| {
            let row = c.query_opt(statement, &[&spec.id, &spec.token, &ttl_ms])?;
            Ok(row.map(|r| r.get::<_, Option<String>>(0)))
        });
        match renewal {
            Ok(Some(stop)) => {
                renewed = attempt;
                let drain = match stop.as_deref() {
                    Some("drain") => Some(true),
                    Some(_) => Some(false),
                    None => None,
                };
                if drain.is_some() && drain != told_stop {
                    told_stop = drain;
                    tell(LeaseNews::Stop {
                        drain: drain.unwrap_or(false),
                    });
                }
            }
            Ok(None) => {
                lost.store(true, Ordering::SeqCst);
                tell(LeaseNews::Lost);
                return;
            }
            Err(_) if Instant::now() < renewed + spec.ttl => {}
            Err(_) => {
                lost.store(true, Ordering::SeqCst);
                tell(LeaseNews::Lost);
                return;
            }
        }
    }
}
