//! Reading runs: metadata, state (snapshot plus the records after it), records in pages (constant
//! memory), followers, blobs, listings. Nothing here takes a lease or writes.
//!
//! Invariant: records are read in seq order and checked to follow each other without a gap;
//! a snapshot is believed only when its CRC32C matches its text and its seq is the seq of the
//! state it holds (else the whole log is replayed and [`LoadInfo::snapshot_ignored`] says why).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dloop_core::{Record, RunState, Timestamp};
use dloop_store::{
    Follow, LoadInfo, LockInfo, Records, Result, RunList, RunMeta, RunSummary, StoreError,
};

use crate::conn::Conn;
use crate::{PgStore, lock};

/// Records fetched per query.
const PAGE: i64 = 1000;

/// A name for the run's log in messages (the errors that name a file take it).
pub(crate) fn log_name(id: &str) -> PathBuf {
    PathBuf::from(format!("postgres:events[{id}]"))
}

fn bad_record(id: &str, seq: i64, e: serde_json::Error) -> StoreError {
    StoreError::Database {
        what: format!("run `{id}`: the record at seq {seq} is not one this version reads"),
        source: Some(Box::new(e)),
    }
}

/// Decodes a page of `(seq, record)` rows, checking each seq is `*next` and advancing it.
pub(crate) fn decode_page(id: &str, rows: &[postgres::Row], next: &mut u64) -> Result<Vec<Record>> {
    decode_rows(id, rows, next, 0)
}

/// [`decode_page`] over rows whose seq is column `seq_col` and whose record is the next one.
fn decode_rows(
    id: &str,
    rows: &[postgres::Row],
    next: &mut u64,
    seq_col: usize,
) -> Result<Vec<Record>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.get(seq_col);
        let text: &str = row.get(seq_col + 1);
        if seq as u64 != *next {
            return Err(StoreError::SeqGap {
                path: log_name(id),
                line: *next,
                offset: 0,
                expected: *next,
                found: seq as u64,
            });
        }
        let record: Record = serde_json::from_str(text).map_err(|e| bad_record(id, seq, e))?;
        *next += 1;
        out.push(record);
    }
    Ok(out)
}

fn page(conn: &mut Conn, id: &str, from: u64) -> Result<Vec<postgres::Row>> {
    let from = from as i64;
    conn.run("read records", |c| {
        c.query(
            "SELECT seq, record FROM events WHERE run_id = $1 AND seq >= $2
             ORDER BY seq LIMIT $3",
            &[&id, &from, &PAGE],
        )
    })
}

/// `NotFound` unless run `id` exists (and is not being deleted).
pub(crate) fn exists(conn: &mut Conn, id: &str) -> Result<()> {
    let found = conn.run("find a run", |c| {
        c.query_opt("SELECT 1 FROM runs WHERE id = $1 AND NOT deleting", &[&id])
    })?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound {
            run_id: id.to_owned(),
        }),
    }
}

/// Run `id`'s row: whether it is being deleted, and its holder while its lease is live.
pub(crate) fn row_lease(store: &PgStore, id: &str) -> Result<Option<(bool, Option<LockInfo>)>> {
    let row = store.conn().run("read a lease", |c| {
        c.query_opt(
            "SELECT deleting, lease_expires_at > clock_timestamp(), lease_pid, lease_host,
                 (extract(epoch FROM lease_started_at) * 1000)::bigint
             FROM runs WHERE id = $1",
            &[&id],
        )
    })?;
    Ok(row.map(|r| {
        let live: Option<bool> = r.get(1);
        let holder = live.unwrap_or(false).then(|| LockInfo {
            pid: r.get::<_, Option<i32>>(2).unwrap_or(0) as u32,
            host: r.get::<_, Option<String>>(3).unwrap_or_default(),
            started_at: Timestamp::from_millis(r.get::<_, Option<i64>>(4).unwrap_or(0) as u64),
        });
        (r.get(0), holder)
    }))
}

/// The metadata of run `id`, checked against the hash stored with it.
pub(crate) fn read_meta(store: &PgStore, id: &str) -> Result<RunMeta> {
    dloop_store::validate_run_id(id)?;
    let row = store.conn().run("read run metadata", |c| {
        c.query_opt(
            "SELECT meta, meta_sha256 FROM runs WHERE id = $1 AND NOT deleting",
            &[&id],
        )
    })?;
    let Some(row) = row else {
        return Err(StoreError::NotFound {
            run_id: id.to_owned(),
        });
    };
    let (json, sha): (String, String) = (row.get(0), row.get(1));
    let path = PathBuf::from(format!("postgres:runs[{id}].meta"));
    if RunMeta::sha256_hex(&json) != sha {
        return Err(StoreError::TamperedMeta {
            path,
            why: "its SHA-256 does not match the one stored with it".to_owned(),
        });
    }
    serde_json::from_str(&json).map_err(|source| StoreError::BadMeta { path, source })
}

/// A stored snapshot, when it can be believed; else why not.
fn snapshot_state(
    text: Option<String>,
    seq: Option<i64>,
    crc: Option<i64>,
) -> std::result::Result<Option<RunState>, String> {
    let (Some(text), Some(seq), Some(crc)) = (text, seq, crc) else {
        return Ok(None);
    };
    if i64::from(crc32c::crc32c(text.as_bytes())) != crc {
        return Err("its checksum does not match (edited)".to_owned());
    }
    let state: RunState =
        serde_json::from_str(&text).map_err(|e| format!("unreadable by this version: {e}"))?;
    if state.last_seq != seq as u64 {
        return Err("its seq does not match the state it holds".to_owned());
    }
    Ok(Some(state))
}

/// The state of run `id`: the snapshot plus the records after it (or all of them).
pub(crate) fn load_state(conn: &mut Conn, id: &str) -> Result<(RunState, LoadInfo)> {
    let row = conn.run("read a run", |c| {
        c.query_opt(
            "SELECT last_seq, snapshot, snapshot_seq, snapshot_crc FROM runs
             WHERE id = $1 AND NOT deleting",
            &[&id],
        )
    })?;
    let Some(row) = row else {
        return Err(StoreError::NotFound {
            run_id: id.to_owned(),
        });
    };
    let committed: i64 = row.get(0);
    let mut info = LoadInfo::default();
    let mut state = match snapshot_state(row.get(1), row.get(2), row.get(3)) {
        Ok(Some(state)) if state.last_seq <= committed as u64 => {
            info.snapshot_seq = Some(state.last_seq);
            state
        }
        Ok(Some(_)) => {
            info.snapshot_ignored = Some("it is ahead of the log".to_owned());
            RunState::default()
        }
        Ok(None) => RunState::default(),
        Err(why) => {
            info.snapshot_ignored = Some(why);
            RunState::default()
        }
    };
    let mut next = state.last_seq + 1;
    loop {
        let rows = page(conn, id, next)?;
        for record in decode_page(id, &rows, &mut next)? {
            state.apply(&record);
            info.replayed += 1;
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    if state.last_seq < committed as u64 {
        return Err(StoreError::SeqGap {
            path: log_name(id),
            line: state.last_seq + 1,
            offset: 0,
            expected: state.last_seq + 1,
            found: committed as u64,
        });
    }
    info.last_seq = state.last_seq;
    Ok((state, info))
}

/// Run `id`'s records from `seq` on, a page at a time.
pub(crate) fn records(conn: Arc<Mutex<Conn>>, id: &str, seq: u64) -> Records {
    Box::new(PgRecords {
        conn,
        id: id.to_owned(),
        next: seq.max(1),
        buf: VecDeque::new(),
        done: false,
    })
}

struct PgRecords {
    conn: Arc<Mutex<Conn>>,
    id: String,
    next: u64,
    buf: VecDeque<Record>,
    done: bool,
}

impl Iterator for PgRecords {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.buf.is_empty() && !self.done {
            let rows = match page(&mut lock(&self.conn), &self.id, self.next) {
                Ok(rows) => rows,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            self.done = (rows.len() as i64) < PAGE;
            match decode_page(&self.id, &rows, &mut self.next) {
                Ok(records) => self.buf.extend(records),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

/// `dloop logs -f` on the database: each poll reads the committed records after the last one
/// seen (a batch commits whole, so a poll never sees half of one).
pub(crate) struct PgFollow {
    pub(crate) conn: Arc<Mutex<Conn>>,
    pub(crate) id: String,
    pub(crate) after_seq: u64,
}

impl Follow for PgFollow {
    fn poll(&mut self) -> Result<Vec<Record>> {
        let mut next = self.after_seq + 1;
        let mut out = Vec::new();
        loop {
            let rows = page(&mut lock(&self.conn), &self.id, next)?;
            out.extend(decode_page(&self.id, &rows, &mut next)?);
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        self.after_seq = next - 1;
        Ok(out)
    }
}

/// Blob `name` of run `id`, its chunks joined.
pub(crate) fn get_blob(conn: &mut Conn, id: &str, name: &str) -> Result<Option<Vec<u8>>> {
    let rows = conn.run("read a blob", |c| {
        c.query(
            "SELECT data FROM blobs WHERE run_id = $1 AND name = $2 ORDER BY chunk",
            &[&id, &name],
        )
    })?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for row in &rows {
        out.extend_from_slice(row.get::<_, &[u8]>(0));
    }
    Ok(Some(out))
}

/// Every run with its state and liveness, in one query (snapshots plus the records after
/// them); a run whose snapshot is not believed is loaded alone, from its whole log.
pub(crate) fn list_runs(store: &PgStore) -> Result<RunList> {
    let rows = store.conn().run("list runs", |c| {
        c.query(
            "SELECT r.id, r.snapshot, r.snapshot_seq, r.snapshot_crc,
                 coalesce(r.lease_expires_at > clock_timestamp(), false), e.seq, e.record
             FROM runs r LEFT JOIN events e
                 ON e.run_id = r.id AND e.seq > coalesce(r.snapshot_seq, 0)
             WHERE NOT r.deleting ORDER BY r.id COLLATE \"C\", e.seq",
            &[],
        )
    })?;
    let mut list = RunList::default();
    let mut i = 0;
    while i < rows.len() {
        let id: String = rows[i].get(0);
        let live: bool = rows[i].get(4);
        let mut end = i;
        while end < rows.len() && rows[end].get::<_, &str>(0) == id {
            end += 1;
        }
        let tail: Vec<postgres::Row> = rows[i..end]
            .iter()
            .filter(|r| r.get::<_, Option<i64>>(5).is_some())
            .cloned()
            .collect();
        let loaded = match snapshot_state(rows[i].get(1), rows[i].get(2), rows[i].get(3)) {
            Ok(snapshot) => {
                let mut state = snapshot.unwrap_or_default();
                let mut next = state.last_seq + 1;
                let decoded = decode_rows(&id, &tail, &mut next, 5);
                decoded.map(|records| {
                    for r in &records {
                        state.apply(r);
                    }
                    state
                })
            }
            Err(_) => load_state(&mut store.conn(), &id).map(|(s, _)| s),
        };
        match loaded {
            Ok(state) => list.runs.push(RunSummary { id, state, live }),
            Err(e) => list.unreadable.push((id, e)),
        }
        i = end;
    }
    list.incomplete = store.incomplete()?;
    Ok(list)
}
