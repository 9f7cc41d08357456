//! [`FileStore`]: the [`Store`] trait over a runtime folder of run folders (see
//! [`crate::run_dir`] for the layout), and [`FileRun`], the writer's handle on one run.
//!
//! Invariants: every write happens through a [`FileRun`], which holds the run lock for its whole
//! life and checks before each append that the lock file is still the one it holds; readers
//! open files read-only and never take the exclusive lock; no file is opened through a link; a
//! snapshot is used only when its checksum holds and the log still holds the record it was
//! taken at (checked by reading that one line, so resume cost does not grow with the log).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use dloop_core::{Event, Record, RunState, Timestamp};

use crate::error::{Result, StoreError};
use crate::files::{self, Mode};
use crate::lock::{self, AcquireError, LockInfo, RunLock};
use crate::log::EventLog;
use crate::reader::LogReader;
use crate::run_dir::{self, CREATING, DELETING, Layout, RunMeta};
use crate::scan::{Mark, MarkCheck, ScanStart, check_mark, scan};
use crate::snapshot;
use crate::{Follow, Incomplete, LoadInfo, Records, RunHandle, RunList, RunSummary, Store};

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

    /// The folder where run `id`'s local files live (`work/` is `${run.dir}`, `scripts/` long
    /// commands while they run), for the composition root to hand to the runtime. Checked id; the folder
    /// may not exist.
    pub fn local_run_dir(&self, id: &str) -> Result<PathBuf> {
        self.layout.run_dir(id)
    }
}

fn acquire(path: &Path, id: &str) -> Result<RunLock> {
    RunLock::try_acquire(path).map_err(|e| match e {
        AcquireError::Held(info) => StoreError::AlreadyLive {
            run_id: id.to_owned(),
            pid: info.map(|i| i.pid),
        },
        AcquireError::Store(e) => e,
    })
}

/// Loads the state from the snapshot in `dir` plus the log after it. `writer`: open the log for
/// appending (cutting a crash's torn tail); otherwise read only.
///
/// The log before a valid snapshot is not re-read (that is what keeps resume cost independent
/// of the log's length): the snapshot's own checksum and the one line it was taken at are
/// verified, then everything after it. `dloop inspect` without a snapshot verifies it all.
fn load(dir: &Path, writer: bool) -> Result<(RunState, LoadInfo, Option<EventLog>)> {
    let events = run_dir::events_path(dir);
    let snap_path = dir.join(snapshot::FILE_NAME);
    let mode = if writer { Mode::Append } else { Mode::Read };
    let file = files::open(&events, mode, "open")?;
    let mut info = LoadInfo::default();
    let mut ignore = |why: String| {
        info.snapshot_ignored = Some(why);
        (
            RunState::default(),
            ScanStart::BEGINNING,
            Mark::default(),
            None,
        )
    };
    let (mut state, start, prev, snapshot_seq) = match snapshot::read::<RunState>(dir)? {
        Ok(None) => (
            RunState::default(),
            ScanStart::BEGINNING,
            Mark::default(),
            None,
        ),
        Err(why) => ignore(why),
        Ok(Some(snap)) => match snap.mark() {
            None => ignore(format!("{} has a malformed last_crc", snap_path.display())),
            Some(_) if snap.state.last_seq != snap.seq => ignore(format!(
                "{} holds the state at seq {} but claims seq {}",
                snap_path.display(),
                snap.state.last_seq,
                snap.seq
            )),
            Some(mark) => match check_mark(&file, &events, &snap_path, mark)? {
                MarkCheck::Valid => {
                    let start = ScanStart {
                        offset: mark.end,
                        next_seq: mark.seq + 1,
                    };
                    (snap.state, start, mark, Some(mark.seq))
                }
                MarkCheck::Mismatch(why) => ignore(format!(
                    "{} does not match the log: {why}",
                    snap_path.display()
                )),
            },
        },
    };
    info.snapshot_seq = snapshot_seq;
    let mut replayed = 0u64;
    let mut apply = |r: &Record| {
        state.apply(r);
        replayed += 1;
    };
    let log = if writer {
        let (log, repair) = EventLog::open_file(file, &events, start, prev, apply)?;
        info.last_seq = log.last_seq();
        info.repair = repair;
        if info.snapshot_ignored.is_some() {
            // A snapshot that does not match the log is useless; remove it so no reader trips
            // on it. The next save_snapshot writes a good one.
            let _ = std::fs::remove_file(&snap_path);
        }
        Some(log)
    } else {
        let outcome = scan(&file, &events, start, prev, &mut apply)?;
        info.last_seq = outcome.mark.seq;
        info.repair = outcome.tail;
        None
    };
    info.replayed = replayed;
    Ok((state, info, log))
}

impl Store for FileStore {
    /// Durability steps:
    /// 1. make `runs/.creating-<id>-<n>/` and its subfolders, and take its run lock;
    /// 2. create the empty `events.jsonl`;
    /// 3. write `run.json` (temp, fsync, rename, fsync the folder: also makes 1-2 durable);
    /// 4. rename the folder to `runs/<id>` (atomic: the run appears whole or not at all);
    /// 5. `fsync` `runs/`, so the rename survives a power loss.
    ///
    /// A failure at any step (a full disk) removes the temp folder; one a crash leaves behind is
    /// listed as [`Incomplete`] and never as a run.
    fn create_run(&self, meta: &RunMeta) -> Result<Box<dyn RunHandle>> {
        let id = meta.id.as_str();
        // Step 1.
        let staged = run_dir::stage(&self.layout, id)?;
        let built = (|| {
            let lock = acquire(&run_dir::lock_path(&staged.temp), id)?;
            // Step 2.
            let log = EventLog::create(&run_dir::events_path(&staged.temp))?;
            // Step 3.
            run_dir::write_meta(&staged.temp, meta)?;
            Ok::<_, StoreError>((lock, log))
        })();
        let (mut lock, log) = match built {
            Ok(parts) => parts,
            Err(e) => {
                staged.abandon();
                return Err(e);
            }
        };
        // Steps 4 and 5.
        let dir = staged.publish(id)?;
        lock.moved_to(run_dir::lock_path(&dir));
        let events = run_dir::events_path(&dir);
        Ok(Box::new(FileRun {
            id: id.to_owned(),
            layout: self.layout.clone(),
            dir,
            log: Some(log.moved_to(events)),
            lock,
        }))
    }

    fn open_run(&self, id: &str) -> Result<Box<dyn RunHandle>> {
        let dir = run_dir::existing(&self.layout, id)?;
        let lock = acquire(&run_dir::lock_path(&dir), id)?;
        Ok(Box::new(FileRun {
            id: id.to_owned(),
            layout: self.layout.clone(),
            dir,
            log: None,
            lock,
        }))
    }

    fn run_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in entries(&self.layout)? {
            if let Entry::Run(id) = entry {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn list_runs(&self) -> Result<RunList> {
        let mut list = RunList::default();
        for entry in entries(&self.layout)? {
            match entry {
                Entry::Run(id) => match self.summary(&id) {
                    Ok(summary) => list.runs.push(summary),
                    Err(e) => list.unreadable.push((id, e)),
                },
                Entry::Incomplete(incomplete) => list.incomplete.push(incomplete),
                Entry::Unsafe(id, e) => list.unreadable.push((id, e)),
            }
        }
        list.runs.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(list)
    }

    /// Also checks `run.json` against the definition hash the log's first record holds (one
    /// record read), so an edited `run.json` is refused even with its own hash recomputed.
    fn read_meta(&self, id: &str) -> Result<RunMeta> {
        let dir = run_dir::existing(&self.layout, id)?;
        let meta = run_dir::read_meta(&dir, id)?;
        let mut records = LogReader::open(&run_dir::events_path(&dir), ScanStart::BEGINNING, 1)?;
        if let Some(Record {
            event: Event::RunStarted {
                definition_sha256, ..
            },
            ..
        }) = records.next().transpose()?
            && definition_sha256 != meta.definition_sha256
        {
            return Err(StoreError::TamperedMeta {
                path: run_dir::meta_path(&dir),
                why: format!(
                    "its definition_sha256 {} is not the {definition_sha256} the log recorded \
                     when the run started",
                    meta.definition_sha256
                ),
            });
        }
        Ok(meta)
    }

    fn load_state(&self, id: &str) -> Result<(RunState, LoadInfo)> {
        let dir = run_dir::existing(&self.layout, id)?;
        let (state, info, _) = load(&dir, false)?;
        Ok((state, info))
    }

    fn is_live(&self, id: &str) -> Result<bool> {
        let dir = run_dir::existing(&self.layout, id)?;
        Ok(lock::is_locked(&run_dir::lock_path(&dir)))
    }

    fn holder(&self, id: &str) -> Result<Option<LockInfo>> {
        let dir = run_dir::existing(&self.layout, id)?;
        let path = run_dir::lock_path(&dir);
        Ok(lock::is_locked(&path)
            .then(|| lock::read_info(&path))
            .flatten())
    }

    fn records_from(&self, id: &str, seq: u64) -> Result<Records> {
        let dir = run_dir::existing(&self.layout, id)?;
        let reader = LogReader::open(&run_dir::events_path(&dir), ScanStart::BEGINNING, seq)?;
        Ok(Box::new(reader))
    }

    fn follow(&self, id: &str, after_seq: u64) -> Result<Box<dyn Follow>> {
        let dir = run_dir::existing(&self.layout, id)?;
        Ok(Box::new(FileFollow {
            path: run_dir::events_path(&dir),
            position: ScanStart::BEGINNING,
            after_seq,
        }))
    }

    fn get_blob(&self, id: &str, name: &str) -> Result<Option<Vec<u8>>> {
        get_blob(&run_dir::existing(&self.layout, id)?, name)
    }

    fn read_output(&self, id: &str, from: u64, to: Option<u64>) -> Result<(Vec<u8>, u64)> {
        crate::output::read(&run_dir::existing(&self.layout, id)?, from, to)
    }

    fn remove_incomplete(&self, name: &str) -> Result<bool> {
        let runs = self.layout.runs_dir();
        let dir = runs.join(name);
        let is_staged = name.starts_with(CREATING) || name.starts_with(DELETING);
        let is_husk = run_dir::validate_run_id(name).is_ok()
            && std::fs::symlink_metadata(run_dir::events_path(&dir)).is_err();
        if name.contains('/') || !(is_staged || is_husk) || !files::check_dir(&dir)? {
            return Ok(false);
        }
        // A creation or deletion in progress holds the lock inside; leave it alone.
        let lock = match RunLock::try_acquire(&run_dir::lock_path(&dir)) {
            Ok(lock) => lock,
            Err(AcquireError::Held(_)) => return Ok(false),
            Err(AcquireError::Store(e)) => return Err(e),
        };
        crate::fault::remove_dir_all(&dir).map_err(|e| StoreError::io("remove", &dir, e))?;
        drop(lock);
        files::sync_dir(&runs)?;
        Ok(true)
    }
}

impl FileStore {
    /// One run for a listing; the lock of a finished run is not probed (nothing drives it),
    /// which keeps `status` on 1,000 runs within its budget.
    fn summary(&self, id: &str) -> Result<RunSummary> {
        let (state, _) = self.load_state(id)?;
        let live = !state.status.is_finished() && self.is_live(id)?;
        Ok(RunSummary {
            id: id.to_owned(),
            state,
            live,
        })
    }
}

/// One entry of `runs/`.
enum Entry {
    Run(String),
    Incomplete(Incomplete),
    Unsafe(String, StoreError),
}

fn entries(layout: &Layout) -> Result<Vec<Entry>> {
    let Some(runs) = run_dir::runs_dir_checked(layout, false)? else {
        return Ok(Vec::new());
    };
    let list = std::fs::read_dir(&runs).map_err(|e| StoreError::io("list", &runs, e))?;
    let mut out = Vec::new();
    for entry in list {
        let entry = entry.map_err(|e| StoreError::io("list", &runs, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let dir = entry.path();
        let staged = if name.starts_with(CREATING) {
            Some("a run creation that did not finish")
        } else if name.starts_with(DELETING) {
            Some("a run deletion that did not finish")
        } else {
            None
        };
        if let Some(why) = staged {
            out.push(Entry::Incomplete(Incomplete {
                busy: lock::is_locked(&run_dir::lock_path(&dir)),
                name,
                why: why.to_owned(),
            }));
            continue;
        }
        if run_dir::validate_run_id(&name).is_err() {
            continue;
        }
        if let Err(e) = files::check_dir(&dir) {
            out.push(Entry::Unsafe(name, e));
            continue;
        }
        match std::fs::symlink_metadata(run_dir::events_path(&dir)) {
            Ok(_) => out.push(Entry::Run(name)),
            Err(e) if e.kind() == ErrorKind::NotFound => out.push(Entry::Incomplete(Incomplete {
                busy: lock::is_locked(&run_dir::lock_path(&dir)),
                name,
                why: "a run folder without a log (a creation cut short by an older dloop)"
                    .to_owned(),
            })),
            Err(e) => out.push(Entry::Unsafe(
                name,
                StoreError::io("stat", run_dir::events_path(&dir), e),
            )),
        }
    }
    Ok(out)
}

fn get_blob(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    run_dir::validate_blob_name(name)?;
    files::read_optional(&dir.join(name))
}

/// `logs --follow` on the file store: rereads from the end of the last whole batch it saw.
struct FileFollow {
    path: PathBuf,
    position: ScanStart,
    after_seq: u64,
}

impl Follow for FileFollow {
    fn poll(&mut self) -> Result<Vec<Record>> {
        let mut reader = LogReader::open(&self.path, self.position, self.after_seq + 1)?;
        let records = reader.by_ref().collect::<Result<Vec<_>>>()?;
        self.position = reader.position();
        if let Some(last) = records.last() {
            self.after_seq = last.seq;
        }
        Ok(records)
    }
}

/// The writer's handle on one run: holds the run lock until dropped.
#[derive(Debug)]
pub struct FileRun {
    id: String,
    layout: Layout,
    dir: PathBuf,
    log: Option<EventLog>,
    // Last, so it is dropped (unlocked) after the log is closed.
    lock: RunLock,
}

impl FileRun {
    fn log_mut(&mut self) -> Result<&mut EventLog> {
        let id = &self.id;
        self.log
            .as_mut()
            .ok_or_else(|| StoreError::NotLoaded { run_id: id.clone() })
    }
}

impl RunHandle for FileRun {
    fn id(&self) -> &str {
        &self.id
    }

    fn load_state(&mut self) -> Result<(RunState, LoadInfo)> {
        // With the log already open (after create or an earlier load) nothing needs repair:
        // read it without reopening the writer.
        let writer = self.log.is_none();
        let (state, info, log) = load(&self.dir, writer)?;
        if log.is_some() {
            self.log = log;
        }
        Ok((state, info))
    }

    fn append(&mut self, events: &[Event], now: Timestamp) -> Result<Vec<Record>> {
        // One `stat` per batch: a lock file deleted or replaced under us means another process
        // may hold the run now; writing on would interleave two logs.
        self.check_claim()?;
        self.log_mut()?.append_batch(events, now)
    }

    fn save_snapshot(&mut self, state: &RunState) -> Result<()> {
        self.check_claim()?;
        let log = self.log_mut()?;
        if log.is_poisoned() {
            return Err(StoreError::Poisoned {
                path: log.path().to_owned(),
            });
        }
        let mark = log.mark();
        // Invariant: the state is the fold of every record appended, so it ends at the mark.
        debug_assert_eq!(state.last_seq, mark.seq);
        snapshot::write(&self.dir, mark, state)
    }

    fn last_seq(&self) -> Option<u64> {
        self.log.as_ref().map(EventLog::last_seq)
    }

    fn records_from(&self, seq: u64) -> Result<Records> {
        let reader = LogReader::open(&run_dir::events_path(&self.dir), ScanStart::BEGINNING, seq)?;
        Ok(Box::new(reader))
    }

    fn put_blob(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        run_dir::validate_blob_name(name)?;
        self.check_claim()?;
        snapshot::replace_file(&self.dir, name, bytes, "blob")
    }

    fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>> {
        get_blob(&self.dir, name)
    }

    fn open_output(&mut self) -> Result<Box<dyn crate::OutputStream>> {
        self.check_claim()?;
        Ok(Box::new(crate::output::FileOutput::open(&self.dir)?))
    }

    fn read_output(&self, from: u64, to: Option<u64>) -> Result<(Vec<u8>, u64)> {
        crate::output::read(&self.dir, from, to)
    }

    fn check_claim(&self) -> Result<()> {
        self.lock.check().map_err(|why| StoreError::ClaimLost {
            run_id: self.id.clone(),
            why,
        })
    }

    fn delete(self: Box<Self>) -> Result<()> {
        self.check_claim()?;
        let FileRun {
            id,
            layout,
            dir,
            log,
            lock,
        } = *self;
        drop(log);
        run_dir::remove(&layout, &dir, &id)?;
        drop(lock);
        Ok(())
    }
}
