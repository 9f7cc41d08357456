//! The parallel state file: `.loops/.dloop/parallel/<id>/parallel.json`.
//!
//! Format (version 2, the current one):
//! ```json
//! { "schema_version": 2, "id": "...", "loop_name": "...", "target": "main",
//!   "integrate": "merge" | "push" | "branch", "gate": "cmd" | null, "jobs": 2,
//!   "keep_branches": false, "created_at": "RFC 3339",
//!   "workers": [ { "task": "a", "context": {"k": "v"}, "status": "queued", "run_id": null,
//!                  "branch": null, "worktree": null, "attempts": 0, "last_error": null,
//!                  "intent": null, "integrated": null,
//!                  "timestamps": {"queued": "...", "running": "..."} } ] }
//! ```
//! Version 1 (the first layout) kept workers in a map by task id, each with a `state` word and
//! one `updated_at`; it had no attempts, timestamps or integration intent.
//!
//! Rules: a file is migrated forward on load one version at a time ([`migrate`]); a file from
//! a newer version is refused and never written over; fields this version does not know are
//! kept (in `extra`) and written back; a migration never drops a worker (checked after every
//! step). Saving is write-temp, fsync, rename, fsync-dir, so a crash leaves the old file or the
//! new one, never a torn one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::RuntimeError;

/// The version this build writes.
pub const SCHEMA_VERSION: u64 = 2;

/// The state file's name in a parallel folder.
pub const STATE_FILE: &str = "parallel.json";

/// The coordinator's lock file in a parallel folder (an flock held for its life; its pid).
pub const LOCK_FILE: &str = "coordinator.lock";

/// How a finished worker's branch comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Integrate {
    /// Rebase onto the target and fast-forward it.
    #[default]
    Merge,
    /// The same onto `origin`'s target, then push (never forced).
    Push,
    /// Leave the branch for review.
    Branch,
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Waiting for a slot.
    Queued,
    /// Its run is working.
    Running,
    /// Its run succeeded; its branch is being brought back.
    Integrating,
    /// Integrated (or, with `branch`, left for review).
    Completed,
    /// Its run failed, or paused and needs a person.
    Failed,
    /// A conflict or a failed gate; its worktree and branch are kept.
    Blocked,
}

impl WorkerStatus {
    /// The word `status` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Integrating => "integrating",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Blocked => "blocked",
        }
    }

    /// Whether the coordinator has nothing more to do for it (until `retry`).
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Blocked)
    }
}

/// The integration intent, recorded (and durable) before the target's ref is updated, so a
/// resumed coordinator can tell whether the update happened: it checks whether the target
/// holds `commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The rebased commit the target is about to be moved to.
    pub commit: String,
    /// The target's commit it was rebased onto.
    pub onto: String,
}

/// One task's worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    /// The task's id.
    pub task: String,
    /// The task's fields: the run's context.
    #[serde(default)]
    pub context: BTreeMap<String, String>,
    /// Where it is.
    pub status: WorkerStatus,
    /// Its run, once started.
    #[serde(default)]
    pub run_id: Option<String>,
    /// Its branch (`dloop/<run-id>`).
    #[serde(default)]
    pub branch: Option<String>,
    /// Its worktree folder.
    #[serde(default)]
    pub worktree: Option<String>,
    /// Runs started or integrations tried.
    #[serde(default)]
    pub attempts: u32,
    /// Why it failed or is blocked.
    #[serde(default)]
    pub last_error: Option<String>,
    /// An integration in progress.
    #[serde(default)]
    pub intent: Option<Intent>,
    /// The commit the target got (merge, push), or the branch head left (branch).
    #[serde(default)]
    pub integrated: Option<String>,
    /// When it entered each status (the latest time).
    #[serde(default)]
    pub timestamps: BTreeMap<String, String>,
    /// Fields a newer dloop wrote that this one does not know: kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Worker {
    /// A queued worker for a task.
    pub fn new(task: String, context: BTreeMap<String, String>, now: &str) -> Self {
        let mut worker = Self {
            task,
            context,
            status: WorkerStatus::Queued,
            run_id: None,
            branch: None,
            worktree: None,
            attempts: 0,
            last_error: None,
            intent: None,
            integrated: None,
            timestamps: BTreeMap::new(),
            extra: Map::new(),
        };
        worker.timestamps.insert("queued".into(), now.to_owned());
        worker
    }

    /// Moves to `status` at `now`; `error` becomes the last error when given.
    pub fn set(&mut self, status: WorkerStatus, now: &str, error: Option<String>) {
        self.status = status;
        self.timestamps
            .insert(status.as_str().to_owned(), now.to_owned());
        if error.is_some() {
            self.last_error = error;
        }
    }
}

/// A parallel run: its settings and its workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParallelState {
    /// Always [`SCHEMA_VERSION`] once loaded.
    pub schema_version: u64,
    /// The parallel run's id.
    pub id: String,
    /// The loop every worker runs (a name or a path, as given).
    pub loop_name: String,
    /// The branch results go to.
    pub target: String,
    /// How they go there.
    pub integrate: Integrate,
    /// A command that must pass in a worker's worktree before it is integrated.
    #[serde(default)]
    pub gate: Option<String>,
    /// Workers at once.
    pub jobs: usize,
    /// Keep the branches of integrated workers.
    #[serde(default)]
    pub keep_branches: bool,
    /// When it was made.
    pub created_at: String,
    /// One per task, in the tasks file's order.
    pub workers: Vec<Worker>,
    /// Fields a newer dloop wrote that this one does not know: kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ParallelState {
    /// The worker of `task`.
    pub fn worker_mut(&mut self, task: &str) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.task == task)
    }
}

fn corrupt(path: &Path, message: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Parallel(format!("{}: {message}", path.display()))
}

/// Loads a state file, migrating it forward in memory (the file is rewritten by the next save).
///
/// # Errors
/// The file cannot be read or parsed, comes from a newer dloop, or a migration would lose a
/// worker.
pub fn load(path: &Path) -> Result<ParallelState, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|source| RuntimeError::Io {
        op: "read",
        path: path.to_owned(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| corrupt(path, e))?;
    let value = migrate(value).map_err(|e| corrupt(path, e))?;
    serde_json::from_value(value).map_err(|e| corrupt(path, e))
}

/// Migrates a state document to [`SCHEMA_VERSION`], one version at a time.
///
/// # Errors
/// A version newer than this build's (refused: never written over), a document that is not a
/// state, or a step that would lose a worker.
pub fn migrate(mut value: Value) -> Result<Value, String> {
    loop {
        let version = value
            .get("schema_version")
            .and_then(Value::as_u64)
            .ok_or("no `schema_version`: not a parallel state file")?;
        if version > SCHEMA_VERSION {
            return Err(format!(
                "schema_version {version} is newer than this dloop understands \
                 ({SCHEMA_VERSION}); use a newer dloop (the file is left as it is)"
            ));
        }
        if version == SCHEMA_VERSION {
            return Ok(value);
        }
        let before = count_workers(&value);
        value = match version {
            1 => v1_to_v2(value)?,
            other => return Err(format!("schema_version {other} was never written by dloop")),
        };
        let after = count_workers(&value);
        if after != before {
            return Err(format!(
                "migrating from version {version} would leave {after} of {before} workers; \
                 refused"
            ));
        }
    }
}

fn count_workers(value: &Value) -> usize {
    match value.get("workers") {
        Some(Value::Array(list)) => list.len(),
        Some(Value::Object(map)) => map.len(),
        _ => 0,
    }
}

/// Version 1 → 2: workers from a map by task id to a list (ordered by task id, as v1 files
/// had no order); `state` → `status` (v1's `done` → `completed`); `updated_at` becomes the
/// timestamp of that status; attempts start at 1 for workers that had a run. Every other field
/// is kept as it was.
fn v1_to_v2(mut value: Value) -> Result<Value, String> {
    let object = value.as_object_mut().ok_or("not a JSON object")?;
    let workers = match object.remove("workers") {
        Some(Value::Object(map)) => map,
        Some(Value::Array(_)) => return Err("version 1 keeps workers in a map".into()),
        _ => Map::new(),
    };
    let mut list = Vec::with_capacity(workers.len());
    for (task, worker) in workers {
        let mut worker = match worker {
            Value::Object(map) => map,
            other => return Err(format!("worker `{task}` is not an object: {other}")),
        };
        let status = match worker.remove("state").as_ref().and_then(Value::as_str) {
            Some("done") => "completed".to_owned(),
            Some(word) => word.to_owned(),
            None => "queued".to_owned(),
        };
        let mut timestamps = Map::new();
        if let Some(at) = worker.remove("updated_at") {
            timestamps.insert(status.clone(), at);
        }
        let had_run = worker.get("run_id").is_some_and(|r| !r.is_null());
        worker.insert("task".into(), Value::String(task));
        worker.insert("status".into(), Value::String(status));
        worker.insert("timestamps".into(), Value::Object(timestamps));
        worker
            .entry("attempts")
            .or_insert_with(|| Value::from(u32::from(had_run)));
        list.push(Value::Object(worker));
    }
    object.insert("workers".into(), Value::Array(list));
    object.insert("schema_version".into(), Value::from(2));
    Ok(value)
}

/// Saves the state: write a temp file, fsync, rename over, fsync the folder.
///
/// # Errors
/// I/O failures.
pub fn save(path: &Path, state: &ParallelState) -> Result<(), RuntimeError> {
    let io = |op: &'static str, path: PathBuf| move |source| RuntimeError::Io { op, path, source };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
    let text = serde_json::to_string_pretty(state).expect("the state serializes");
    let mut file = std::fs::File::create(&tmp).map_err(io("create", tmp.clone()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(io("write", tmp.clone()))?;
    std::fs::rename(&tmp, path).map_err(io("rename", path.to_owned()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir.to_owned()))?;
    Ok(())
}
