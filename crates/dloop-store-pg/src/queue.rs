//! The work queue of workers, on the `runs` table: `dloop submit` makes a run `queued`;
//! [`claim`] takes runnable runs for a worker; [`settle`] records what became of one.
//!
//! The claim is one statement: a CTE picks the oldest runnable rows with `FOR UPDATE SKIP
//! LOCKED` (rows another claimer is taking are skipped, not waited for) under its `LIMIT` (in a
//! CTE, not a FROM-subquery, whose LIMIT the planner may push away), and the UPDATE around it
//! increments each row's `lease_token`, the fencing token every later write of the claimer
//! must present. Runnable: `queue = 'queued'`, not being deleted, and no live lease (never
//! leased, released, or expired: the holder died or stalled). Runs are taken in the order they
//! became runnable: `coalesce(lease_expires_at, queued_at)`, the key of the partial index
//! `runs_claimable`, so the claim reads that index from its oldest key up to `now()` and never
//! touches the rows of live leases, however many runs are running.

use dloop_store::{Result, RunMeta, Store};

use crate::{Holder, PgStore};

/// The claim statement; `$1` how many, `$2..$5` the holder, `$6` the TTL in milliseconds.
pub const CLAIM_SQL: &str = "
WITH picked AS (
    SELECT id FROM runs
    WHERE queue = 'queued' AND NOT deleting
      AND coalesce(lease_expires_at, queued_at) <= now()
    ORDER BY coalesce(lease_expires_at, queued_at)
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE runs r
SET lease_token = r.lease_token + 1, lease_kind = 'worker', lease_owner = $2,
    lease_pid = $3, lease_host = $4, lease_started_at = clock_timestamp(),
    lease_expires_at = clock_timestamp() + $5::bigint * interval '1 millisecond'
FROM picked
WHERE r.id = picked.id
RETURNING r.id, r.lease_token, r.stop_requested";

/// A run a worker claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The run id.
    pub id: String,
    /// The lease's fencing token (give it to [`PgStore::adopt`]).
    pub token: i64,
    /// A stop was requested before the claim (the holder before died before acting on it).
    pub stop_requested: Option<String>,
}

/// What became of a run a worker drove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// It ended (completed, failed, cancelled, timed out): no worker takes it again.
    Done,
    /// It paused for a person (stopped, out of steps, a decision to make): `dloop resume`
    /// continues it, and `dloop submit --resume` hands it back to the workers.
    Held,
    /// The worker is going away: any worker may continue it now.
    Requeued,
}

/// Creates run `meta` queued for workers (its `run_started` record is in `meta.started`: the
/// worker that claims it writes it, as resume does for a run that never started).
pub fn submit(store: &PgStore, meta: &RunMeta) -> Result<()> {
    submit_with(store, meta, &[])
}

/// [`submit`], with `blobs` (name, bytes) stored on the run before it is queued: the run's
/// lease is held from its creation until it is queued, so no worker sees it without them. A
/// blob that cannot be stored deletes the run again (best effort): nothing is queued.
pub fn submit_with(store: &PgStore, meta: &RunMeta, blobs: &[(&str, &[u8])]) -> Result<()> {
    let mut run = store.create_run(meta)?;
    for (name, bytes) in blobs {
        if let Err(err) = run.put_blob(name, bytes) {
            drop(run.delete());
            return Err(err);
        }
    }
    let id = meta.id.as_str();
    store.conn().run("queue a run", |c| {
        c.execute(
            "UPDATE runs SET queue = 'queued', queued_at = clock_timestamp() WHERE id = $1",
            &[&id],
        )
    })?;
    drop(run); // releases the lease: the run is free for the first worker
    Ok(())
}

/// Hands a paused run back to the workers.
pub fn requeue(store: &PgStore, id: &str) -> Result<bool> {
    dloop_store::validate_run_id(id)?;
    let n = store.conn().run("queue a run", |c| {
        c.execute(
            "UPDATE runs SET queue = 'queued', queued_at = clock_timestamp(),
                 stop_requested = NULL
             WHERE id = $1 AND NOT deleting",
            &[&id],
        )
    })?;
    Ok(n == 1)
}

/// Ends the lease a worker holds on sub-loop run `id` (a run never queued) at once, for the
/// worker that just claimed its parent: a child is driven only by its parent's driver, so
/// once the parent's lease has passed to a new holder the old holder's lease on the child is
/// an orphan (its heartbeat may outlive the parent's by up to a TTL). Its old holder's next
/// write or renewal is refused. Leases of other kinds (a `dloop resume CHILD`) are left alone.
/// Returns whether a live lease was ended.
pub fn end_orphan_lease(store: &PgStore, id: &str) -> Result<bool> {
    dloop_store::validate_run_id(id)?;
    let n = store.conn().run("end an orphaned lease", |c| {
        c.execute(
            "UPDATE runs SET lease_expires_at = clock_timestamp()
             WHERE id = $1 AND queue IS NULL AND lease_kind = 'worker'
               AND lease_expires_at > clock_timestamp()",
            &[&id],
        )
    })?;
    Ok(n == 1)
}

/// Claims at most `n` runnable runs for `holder`, with one statement ([`CLAIM_SQL`]).
pub fn claim(store: &PgStore, n: usize, holder: &Holder) -> Result<Vec<Claimed>> {
    let (n, pid) = (n as i64, holder.pid as i32);
    let ttl = store.lease_ttl().as_millis() as i64;
    store.conn().run("claim runs", |c| {
        let rows = c.query(CLAIM_SQL, &[&n, &holder.owner, &pid, &holder.host, &ttl])?;
        Ok(rows
            .iter()
            .map(|r| Claimed {
                id: r.get(0),
                token: r.get(1),
                stop_requested: r.get(2),
            })
            .collect())
    })
}

/// Records what became of run `id` and releases its lease, in one statement, if the lease
/// `token` is still the run's (a worker that lost it changes nothing). Returns whether it was
/// recorded.
pub fn settle(store: &PgStore, id: &str, token: i64, how: Settled) -> Result<bool> {
    let queue = match how {
        Settled::Done => "done",
        Settled::Held => "held",
        Settled::Requeued => "queued",
    };
    let n = store.conn().run("settle a run", |c| {
        c.execute(
            "UPDATE runs SET queue = $3, stop_requested = NULL, lease_expires_at = NULL,
                 lease_kind = NULL, lease_owner = NULL, lease_pid = NULL, lease_host = NULL,
                 lease_started_at = NULL,
                 queued_at = CASE WHEN $3 = 'queued' THEN clock_timestamp() ELSE queued_at END
             WHERE id = $1 AND lease_token = $2",
            &[&id, &token, &queue],
        )
    })?;
    Ok(n == 1)
}
