//! [`FileStore`]: the [`Store`] trait over a runtime folder of run folders (see [`crate::run_dir`]
//! for the layout), and [`FileRun`], the writer's handle on one run.
//!
//! Invariants: every write happens through a [`FileRun`], which holds the run lock for its whole
//! life; readers ([`FileStore::load_state`], [`FileStore::records_from`]) open files read-only and
//! never take the exclusive lock; a snapshot is only used when it matches the log.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use dloop_core::{Event, Record, Timestamp};

use crate::error::{Result, StoreError};
use crate::lock::{self, AcquireError, LockInfo, RunLock};
use crate::log::{
    EventLog, LogReader, ReadFrom, ResumePoint, ScanStart, check_resume_point, read_from,
    scan_read_only,
};
use crate::run_dir::{self, Layout, RunMeta};
use crate::snapshot::{self, sync_dir};
use crate::{Fold, LoadInfo, RunHandle, Store};

/// The file store: runs under `<root>/runs/<id>/`.
#[derive(Debug, Clone)]
pub struct FileStore {
    layout: Layout,
}

impl FileStore {
    /// A store over the runtime folder `root` (usually `.loops/.dloop`). Nothing is created until
    /// the first run is.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            layout: Layout::new(root),
        }
    }

    /// The folder layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The folder of run `id` (checked; it may not exist).
    pub fn run_dir(&self, id: &str) -> Result<PathBuf> {
        self.layout.run_dir(id)
    }

    /// What the live runner of `id` wrote into its lock file (pid for `dloop stop`), if any.
    pub fn lock_info(&self, id: &str) -> Result<Option<LockInfo>> {
        Ok(lock::read_info(&run_dir::lock_path(&self.run_dir(id)?)))
    }

    fn existing_run_dir(&self, id: &str) -> Result<PathBuf> {
        let dir = self.run_dir(id)?;
        if !run_dir::meta_path(&dir).is_file() {
            return Err(StoreError::NotFound {
                run_id: id.to_owned(),
            });
        }
        Ok(dir)
    }
}

/// Loads a fold from the snapshot in `dir` plus the log after it. `writer`: open the log for
/// appending (cutting a damaged tail); otherwise read only.
///
/// The log before a valid snapshot is not re-read (that is what keeps resume cost independent
/// of the log's length): only the snapshot's resume point and everything after it is verified.
/// `dloop inspect` or a full replay (delete `state.json`) verifies the whole log.
fn load<F: Fold>(dir: &Path, id: &str, writer: bool) -> Result<(F, LoadInfo, Option<EventLog>)> {
    let events = run_dir::events_path(dir);
    if !events.is_file() {
        return Err(StoreError::NotFound {
            run_id: id.to_owned(),
        });
    }
    let mut info = LoadInfo::default();
    let (mut state, start) = match snapshot::read::<F>(dir) {
        Ok(Some(snap)) => {
            let start = ScanStart {
                offset: snap.log_offset,
                next_seq: snap.seq + 1,
            };
            match check_resume_point(&events, start)? {
                ResumePoint::Valid => {
                    info.snapshot_seq = Some(snap.seq);
                    (snap.state, start)
                }
                ResumePoint::Invalid(why) => {
                    info.snapshot_ignored = Some(why);
                    (F::default(), ScanStart::BEGINNING)
                }
            }
        }
        Ok(None) => (F::default(), ScanStart::BEGINNING),
        Err(why) => {
            info.snapshot_ignored = Some(why);
            (F::default(), ScanStart::BEGINNING)
        }
    };
    let mut replayed = 0u64;
    let apply = |r: &Record| {
        state.apply(r);
        replayed += 1;
    };
    let log = if writer {
        let (log, repair) = EventLog::open(&events, start, apply)?;
        info.last_seq = log.last_seq();
        info.repair = repair;
        if info.snapshot_ignored.is_some() {
            // A snapshot that does not match the log is useless; remove it so no reader trips
            // on it. The next save_snapshot writes a good one.
            let _ = std::fs::remove_file(dir.join(snapshot::FILE_NAME));
        }
        Some(log)
    } else {
        let outcome = scan_read_only(&events, start, apply)?;
        info.last_seq = outcome.last_seq;
        info.repair = outcome.tail;
        None
    };
    info.replayed = replayed;
    Ok((state, info, log))
}

impl Store for FileStore {
    type Run = FileRun;
    type Records = LogReader;

    /// Durability steps:
    /// 1. `create_dir` of `runs/<id>` (atomic; `AlreadyExists` if taken) and its subfolders;
    /// 2. take the run lock (a fresh file, so it cannot be held);
    /// 3. create the empty `events.jsonl`;
    /// 4. write `run.json` (temp, fsync, rename, fsync the run folder: also makes 2-3 durable);
    /// 5. `fsync` `runs/`, so the run folder's entry survives a power loss.
    fn create_run(&self, meta: &RunMeta) -> Result<FileRun> {
        let id = meta.id.as_str();
        // Step 1.
        let dir = run_dir::create_run_dir(&self.layout, id)?;
        // Step 2.
        let lock = RunLock::try_acquire(&run_dir::lock_path(&dir)).map_err(|e| match e {
            AcquireError::Held(info) => StoreError::AlreadyLive {
                run_id: id.to_owned(),
                pid: info.map(|i| i.pid),
            },
            AcquireError::Store(e) => e,
        })?;
        // Step 3.
        let log = EventLog::create(&run_dir::events_path(&dir))?;
        // Step 4.
        run_dir::write_meta(&dir, meta)?;
        // Step 5.
        sync_dir(&self.layout.runs_dir())?;
        Ok(FileRun {
            id: id.to_owned(),
            dir,
            log: Some(log),
            _lock: lock,
        })
    }

    fn open_run(&self, id: &str) -> Result<FileRun> {
        let dir = self.existing_run_dir(id)?;
        let lock = RunLock::try_acquire(&run_dir::lock_path(&dir)).map_err(|e| match e {
            AcquireError::Held(info) => StoreError::AlreadyLive {
                run_id: id.to_owned(),
                pid: info.map(|i| i.pid),
            },
            AcquireError::Store(e) => e,
        })?;
        Ok(FileRun {
            id: id.to_owned(),
            dir,
            log: None,
            _lock: lock,
        })
    }

    fn list_runs(&self) -> Result<Vec<String>> {
        let runs = self.layout.runs_dir();
        let entries = match std::fs::read_dir(&runs) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("list", &runs, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &runs, e))?;
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if let (true, Some(name)) = (is_dir, entry.file_name().to_str())
                && run_dir::validate_run_id(name).is_ok()
            {
                ids.push(name.to_owned());
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn read_meta(&self, id: &str) -> Result<RunMeta> {
        run_dir::read_meta(&self.run_dir(id)?, id)
    }

    fn load_state<F: Fold>(&self, id: &str) -> Result<(F, LoadInfo)> {
        let dir = self.existing_run_dir(id)?;
        let (state, info, _) = load(&dir, id, false)?;
        Ok((state, info))
    }

    fn is_live(&self, id: &str) -> Result<bool> {
        Ok(lock::is_locked(&run_dir::lock_path(&self.run_dir(id)?)))
    }

    fn records_from(&self, id: &str, seq: u64) -> Result<LogReader> {
        let dir = self.existing_run_dir(id)?;
        read_from(&run_dir::events_path(&dir), ReadFrom::Seq(seq))
    }
}

/// The writer's handle on one run: holds the run lock until dropped.
#[derive(Debug)]
pub struct FileRun {
    id: String,
    dir: PathBuf,
    log: Option<EventLog>,
    // Last, so it is dropped (unlocked) after the log is closed.
    _lock: RunLock,
}

impl FileRun {
    /// The run folder (`${run.dir}` is its `work/`; outputs go to `outputs/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The open log, once loaded.
    pub fn log(&self) -> Option<&EventLog> {
        self.log.as_ref()
    }

    fn log_mut(&mut self) -> Result<&mut EventLog> {
        let id = &self.id;
        self.log
            .as_mut()
            .ok_or_else(|| StoreError::NotLoaded { run_id: id.clone() })
    }
}

impl RunHandle for FileRun {
    type Records = LogReader;

    fn id(&self) -> &str {
        &self.id
    }

    fn load_state<F: Fold>(&mut self) -> Result<(F, LoadInfo)> {
        // With the log already open (after create or an earlier load) nothing needs repair:
        // read it without reopening the writer.
        let writer = self.log.is_none();
        let (state, info, log) = load(&self.dir, &self.id, writer)?;
        if log.is_some() {
            self.log = log;
        }
        Ok((state, info))
    }

    fn append(&mut self, events: &[Event], now: Timestamp) -> Result<Vec<Record>> {
        self.log_mut()?.append_batch(events, now)
    }

    fn save_snapshot<F: Fold>(&mut self, state: &F) -> Result<()> {
        let log = self.log_mut()?;
        if log.is_poisoned() {
            return Err(StoreError::Poisoned {
                path: log.path().to_owned(),
            });
        }
        let (seq, offset) = (log.last_seq(), log.end_offset());
        snapshot::write(&self.dir, seq, offset, state)
    }

    fn last_seq(&self) -> Option<u64> {
        self.log.as_ref().map(EventLog::last_seq)
    }

    fn records_from(&self, seq: u64) -> Result<LogReader> {
        read_from(&run_dir::events_path(&self.dir), ReadFrom::Seq(seq))
    }
}
