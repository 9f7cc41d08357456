//! The output stream on the database: `outputs (run_id, off)` holds the pieces, each at its byte
//! offset, and `runs.output_len` the stream's length. An append moves the length and inserts its
//! piece in one transaction, fenced by the lease; it commits without waiting for the WAL flush
//! (`synchronous_commit = off`: readers see it at once, as `dloop output -f` needs), and
//! [`OutputStream::sync`] makes everything before it durable with one fenced synchronous commit
//! (a synchronous commit flushes the WAL up to itself, so every earlier commit with it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dloop_store::{OutputStream, Result, StoreError};

use crate::conn::Conn;
use crate::handle::FENCE;
use crate::{BLOB_CHUNK, lock};

/// The writer's end of a run's output stream.
pub(crate) struct PgOutput {
    conn: Arc<Mutex<Conn>>,
    id: String,
    token: i64,
    len: u64,
    lost: Arc<AtomicBool>,
}

impl std::fmt::Debug for PgOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOutput")
            .field("id", &self.id)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl PgOutput {
    pub(crate) fn open(
        conn: Arc<Mutex<Conn>>,
        id: &str,
        token: i64,
        lost: Arc<AtomicBool>,
    ) -> Result<PgOutput> {
        let len = stream_len(&mut lock(&conn), id)?;
        Ok(PgOutput {
            conn,
            id: id.to_owned(),
            token,
            len,
            lost,
        })
    }

    fn lost(&self) -> StoreError {
        self.lost.store(true, Ordering::SeqCst);
        StoreError::ClaimLost {
            run_id: self.id.clone(),
            why: "its lease expired or was taken by another holder".to_owned(),
        }
    }
}

fn stream_len(conn: &mut Conn, id: &str) -> Result<u64> {
    let row = conn.run("read an output stream", |c| {
        c.query_opt("SELECT output_len FROM runs WHERE id = $1", &[&id])
    })?;
    match row {
        Some(row) => Ok(row.get::<_, i64>(0) as u64),
        None => Err(StoreError::NotFound {
            run_id: id.to_owned(),
        }),
    }
}

impl OutputStream for PgOutput {
    fn len(&self) -> u64 {
        self.len
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(self.lost());
        }
        let sql = format!("UPDATE runs SET output_len = $3 WHERE {FENCE} AND output_len = $4");
        for piece in bytes.chunks(BLOB_CHUNK) {
            let (id, token) = (self.id.as_str(), self.token);
            let (old, new) = (self.len as i64, (self.len + piece.len() as u64) as i64);
            // Safe to repeat: a retry after a lost commit finds the length already moved.
            let landed = lock(&self.conn).run("append output", |c| {
                let mut tx = c.transaction()?;
                tx.batch_execute("SET LOCAL synchronous_commit = off")?;
                if tx.execute(sql.as_str(), &[&id, &token, &new, &old])? == 0 {
                    drop(tx);
                    let row = c.query_opt(
                        "SELECT 1 FROM runs r JOIN outputs o ON o.run_id = r.id AND o.off = $2
                         WHERE r.id = $1 AND r.output_len = $3",
                        &[&id, &old, &new],
                    )?;
                    return Ok(row.is_some());
                }
                tx.execute(
                    "INSERT INTO outputs (run_id, off, data) VALUES ($1, $2, $3)",
                    &[&id, &old, &piece],
                )?;
                tx.commit()?;
                Ok(true)
            })?;
            if !landed {
                return Err(self.lost());
            }
            self.len = new as u64;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        let (id, token) = (self.id.as_str(), self.token);
        let sql = format!("UPDATE runs SET output_len = output_len WHERE {FENCE}");
        let n = lock(&self.conn).run("sync output", |c| c.execute(sql.as_str(), &[&id, &token]))?;
        if n == 0 {
            return Err(self.lost());
        }
        Ok(())
    }
}

/// Reads run `id`'s output stream from `from` to `to` (its end when `None` or shorter).
pub(crate) fn read(
    conn: &mut Conn,
    id: &str,
    from: u64,
    to: Option<u64>,
) -> Result<(Vec<u8>, u64)> {
    let len = stream_len(conn, id)?;
    let end = to.map_or(len, |t| t.min(len));
    if from >= end {
        return Ok((Vec::new(), from));
    }
    // A piece is at most BLOB_CHUNK long, so one that covers `from` starts at most that far
    // before it: the primary key's range scan finds every piece needed.
    let (lo, hi) = (from.saturating_sub(BLOB_CHUNK as u64) as i64, end as i64);
    let rows = conn.run("read output", |c| {
        c.query(
            "SELECT off, data FROM outputs WHERE run_id = $1 AND off >= $2 AND off < $3
             ORDER BY off",
            &[&id, &lo, &hi],
        )
    })?;
    let mut out = Vec::with_capacity((end - from) as usize);
    for row in &rows {
        let off = row.get::<_, i64>(0) as u64;
        let data: &[u8] = row.get(1);
        let (start, stop) = (off.max(from), (off + data.len() as u64).min(end));
        if start < stop {
            out.extend_from_slice(&data[(start - off) as usize..(stop - off) as usize]);
        }
    }
    Ok((out, end))
}
