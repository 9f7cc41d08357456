//! The runtime folder's layout and the run folder's creation:
//!
//! ```text
//! <root>/                     usually .loops/.dloop/
//!   runs/<run-id>/            0700, appears whole: built as runs/.creating-<id>-<n>/, renamed
//!     run.json                written once (temp, fsync, rename, fsync folder)
//!     events.jsonl            the log (0600)
//!     state.json              the snapshot (0600)
//!     lock                    the run lock (0600)
//!     output.log              the output stream (0600; [`crate::output`])
//!     <blob>                  named blobs: reloaded definitions, ... (0600)
//!     work/                   0700 (`scripts/` is made by the runtime when needed)
//!   runs/.creating-*/         a creation in progress or cut short (ignored, cleaned by gc)
//!   runs/.deleting-*/         a deletion in progress or cut short (same)
//!   scopes/                   scope lock registry (the runtime's)
//! ```
//!
//! Invariants: a run id or blob name is checked ([`validate_run_id`], [`validate_blob_name`])
//! before it is joined to a path, so none escapes `runs/`; creation never reuses an existing
//! folder; every folder is checked not to be a link before a file in it is opened
//! ([`crate::files`]).

use std::collections::BTreeMap;
use std::fs::DirBuilder;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use dloop_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::files;

/// `run.json`: what a run was started with, written once at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// The run id.
    pub id: String,
    /// The loop's name.
    pub loop_name: String,
    /// The loop file's text, as the run started with it.
    pub definition: String,
    /// SHA-256 (lowercase hex) of `definition`.
    pub definition_sha256: String,
    /// The context the run started with.
    pub context: BTreeMap<String, String>,
    /// The command line that started it.
    pub argv: Vec<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// The project root (absolute path, as text).
    pub project_root: String,
    /// The loop file the run started from (absolute path), so resume can notice a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_path: Option<String>,
    /// The `run_started` record the run begins with. A run that died after its folder was
    /// made but before this record reached the log has run nothing; resume writes it then and
    /// starts the run as `dloop run` would have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<dloop_core::Event>,
    /// The git worktree the run works in (`dloop run --worktree`); `None` for a run in the
    /// project itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<WorktreeRef>,
    // Fields added later must carry `#[serde(default)]` so older run.json files keep loading.
}

/// Where a worktree run works: its folder and branch, and the commit it started from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeRef {
    /// The worktree's folder (absolute path).
    pub path: String,
    /// Its branch (`dloop/<run-id>`).
    pub branch: String,
    /// The commit the branch was made at.
    pub base: String,
}

impl RunMeta {
    /// SHA-256 (lowercase hex) of a definition's text, for [`RunMeta::definition_sha256`].
    pub fn sha256_hex(text: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(text.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Checks a run id before it becomes a path: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 200 bytes,
/// no `..`.
pub fn validate_run_id(id: &str) -> Result<()> {
    let bytes = id.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 200
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !id.contains("..");
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidRunId { id: id.to_owned() })
    }
}

/// Paths of the runtime folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root` (usually `.loops/.dloop`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The runtime root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/runs`.
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// `<root>/runs/<id>`, after checking the id.
    pub fn run_dir(&self, id: &str) -> Result<PathBuf> {
        validate_run_id(id)?;
        Ok(self.runs_dir().join(id))
    }
}

/// Files of one run folder.
pub(crate) fn meta_path(dir: &Path) -> PathBuf {
    dir.join("run.json")
}
pub(crate) fn events_path(dir: &Path) -> PathBuf {
    dir.join("events.jsonl")
}
pub(crate) fn lock_path(dir: &Path) -> PathBuf {
    dir.join("lock")
}

/// Names a blob may not take: the store's own files and folders.
const RESERVED: [&str; 8] = [
    "run.json",
    "events.jsonl",
    "state.json",
    "lock",
    "outputs",
    "work",
    crate::output::FILE_NAME,
    "scripts",
];

/// Prefix of a run folder being created; renamed to the run id once complete.
pub(crate) const CREATING: &str = ".creating-";
/// Prefix of a run folder being deleted.
pub(crate) const DELETING: &str = ".deleting-";

/// Checks a blob name before it becomes a path: a run-id-shaped file name that is not one of
/// the store's own files and does not end in `.tmp`.
pub fn validate_blob_name(name: &str) -> Result<()> {
    if validate_run_id(name).is_ok() && !RESERVED.contains(&name) && !name.ends_with(".tmp") {
        Ok(())
    } else {
        Err(StoreError::InvalidBlobName {
            name: name.to_owned(),
        })
    }
}

fn dir_builder(recursive: bool) -> DirBuilder {
    let mut b = DirBuilder::new();
    b.recursive(recursive).mode(0o700);
    b
}

/// Checks `<root>` and `<root>/runs` (not links, owned by the user); creates them when `create`.
/// Returns `runs/`, or `None` when it does not exist and `create` is false.
pub(crate) fn runs_dir_checked(layout: &Layout, create: bool) -> Result<Option<PathBuf>> {
    let runs = layout.runs_dir();
    if create {
        dir_builder(true)
            .create(&runs)
            .map_err(|e| StoreError::io("create", &runs, e))?;
    }
    if !files::check_dir(layout.root())? || !files::check_dir(&runs)? {
        return Ok(None);
    }
    Ok(Some(runs))
}

/// The folder of an existing run: checked (not a link, the user's) and holding a log. A run
/// whose `run.json` is gone but whose log is there is still found.
///
/// Errors: [`StoreError::NotFound`], [`StoreError::UnsafePath`], [`StoreError::InvalidRunId`].
pub(crate) fn existing(layout: &Layout, id: &str) -> Result<PathBuf> {
    let dir = layout.run_dir(id)?;
    let not_found = || StoreError::NotFound {
        run_id: id.to_owned(),
    };
    if runs_dir_checked(layout, false)?.is_none() || !files::check_dir(&dir)? {
        return Err(not_found());
    }
    match std::fs::symlink_metadata(events_path(&dir)) {
        Ok(m) if m.file_type().is_symlink() => Err(StoreError::UnsafePath {
            path: events_path(&dir),
            why: "is a symbolic link".into(),
        }),
        Ok(_) => Ok(dir),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(not_found()),
        Err(e) => Err(StoreError::io("stat", events_path(&dir), e)),
    }
}

/// A run folder being built under a temporary name.
#[derive(Debug)]
pub(crate) struct Staged {
    /// Where it is built.
    pub(crate) temp: PathBuf,
    /// Where it goes.
    pub(crate) dir: PathBuf,
    runs: PathBuf,
}

/// Makes `runs/.creating-<id>-<n>/` with `work/` (0700).
///
/// Errors: [`StoreError::AlreadyExists`] when `runs/<id>` exists already.
pub(crate) fn stage(layout: &Layout, id: &str) -> Result<Staged> {
    let dir = layout.run_dir(id)?;
    let runs = runs_dir_checked(layout, true)?.ok_or_else(|| StoreError::NotFound {
        run_id: id.to_owned(),
    })?;
    if std::fs::symlink_metadata(&dir).is_ok() {
        return Err(StoreError::AlreadyExists {
            run_id: id.to_owned(),
        });
    }
    let temp = runs.join(format!("{CREATING}{id}-{}", unique()));
    dir_builder(false)
        .create(&temp)
        .map_err(|e| StoreError::io("create", &temp, e))?;
    let work = temp.join("work");
    dir_builder(false)
        .create(&work)
        .map_err(|e| StoreError::io("create", &work, e))?;
    Ok(Staged { temp, dir, runs })
}

impl Staged {
    /// Renames the complete folder into place, then `fsync`s `runs/` so its entry survives a
    /// power loss. The rename is atomic: readers see no run, or the whole of it.
    ///
    /// Errors: [`StoreError::AlreadyExists`] when another process published the id first (the
    /// temp folder is removed).
    pub(crate) fn publish(self, id: &str) -> Result<PathBuf> {
        // rename(2) replaces an *empty* folder; a published run is never empty, so of two
        // creators of one id exactly one wins, and the other gets ENOTEMPTY or EEXIST.
        if let Err(e) = crate::fault::rename(&self.temp, &self.dir) {
            let _ = crate::fault::remove_dir_all(&self.temp);
            return Err(match e.raw_os_error() {
                Some(libc::ENOTEMPTY | libc::EEXIST | libc::ENOTDIR) => StoreError::AlreadyExists {
                    run_id: id.to_owned(),
                },
                _ => StoreError::io("rename", &self.temp, e),
            });
        }
        files::sync_dir(&self.runs)?;
        Ok(self.dir)
    }

    /// Removes a folder whose creation failed (best effort: one left behind is an incomplete
    /// folder that listings ignore and `gc` removes).
    pub(crate) fn abandon(self) {
        let _ = crate::fault::remove_dir_all(&self.temp);
    }
}

/// Removes a run folder: renamed to `runs/.deleting-<id>-<n>` first, so a deletion cut short
/// never leaves a half run under the id, then removed (links inside are removed, never
/// followed) and `runs/` synced.
pub(crate) fn remove(layout: &Layout, dir: &Path, id: &str) -> Result<()> {
    let runs = layout.runs_dir();
    let doomed = runs.join(format!("{DELETING}{id}-{}", unique()));
    crate::fault::rename(dir, &doomed).map_err(|e| StoreError::io("rename", dir, e))?;
    files::sync_dir(&runs)?;
    crate::fault::remove_dir_all(&doomed).map_err(|e| StoreError::io("remove", &doomed, e))
}

/// A name no other process or call uses at the same time.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `run.json` once.
///
/// Written with [`crate::snapshot::replace_file`] (temp, fsync, rename, fsync the folder), which
/// also makes the folder's other new entries durable.
pub(crate) fn write_meta(dir: &Path, meta: &RunMeta) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(meta).map_err(|source| StoreError::BadMeta {
        path: meta_path(dir),
        source,
    })?;
    crate::snapshot::replace_file(dir, "run.json", &bytes, "meta")
}

/// Reads `run.json` of the run folder `dir` (never through a link) and checks that its
/// definition matches its own hash (issue 7, F5).
///
/// Errors: [`StoreError::MetaMissing`] naming the file when it is gone, [`StoreError::BadMeta`],
/// [`StoreError::TamperedMeta`].
pub(crate) fn read_meta(dir: &Path, id: &str) -> Result<RunMeta> {
    let path = meta_path(dir);
    let bytes = files::read_optional(&path)?.ok_or_else(|| StoreError::MetaMissing {
        run_id: id.to_owned(),
        path: path.clone(),
    })?;
    let meta: RunMeta = serde_json::from_slice(&bytes).map_err(|source| StoreError::BadMeta {
        path: path.clone(),
        source,
    })?;
    let actual = RunMeta::sha256_hex(&meta.definition);
    if actual != meta.definition_sha256 {
        return Err(StoreError::TamperedMeta {
            path,
            why: format!(
                "its definition hashes to {actual}, not to the definition_sha256 {} it was \
                 written with",
                meta.definition_sha256
            ),
        });
    }
    if meta.id != id {
        return Err(StoreError::TamperedMeta {
            path,
            why: format!("it names run `{}`", meta.id),
        });
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids() {
        for good in ["fix-tests-20261121T103207-a1b2", "a", "A_b.c-1", "9"] {
            assert!(validate_run_id(good).is_ok(), "{good}");
        }
        for bad in [
            "", ".", "..", "a..b", "-x", ".hidden", "a/b", "../x", "a b", "é", "a\0",
        ] {
            assert!(validate_run_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn folders_are_private_and_exclusive() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(tmp.path().join(".dloop"));
        let first = stage(&layout, "r1").expect("stages");
        let second = stage(&layout, "r1").expect("stages too: nothing is published yet");
        std::fs::write(first.temp.join("run.json"), b"{}").expect("write");
        std::fs::write(second.temp.join("run.json"), b"{}").expect("write");
        let dir = first.publish("r1").expect("publishes");
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(matches!(
            second.publish("r1"),
            Err(StoreError::AlreadyExists { .. })
        ));
        assert!(matches!(
            stage(&layout, "r1"),
            Err(StoreError::AlreadyExists { .. })
        ));
        let left: Vec<_> = std::fs::read_dir(layout.runs_dir()).expect("ls").collect();
        assert_eq!(left.len(), 1, "the loser's temp folder is removed");
    }

    #[test]
    fn blob_names_cannot_escape_or_shadow() {
        assert!(validate_blob_name("definition-ab12.yaml").is_ok());
        for bad in [
            "",
            "../x",
            "a/b",
            ".x",
            "run.json",
            "events.jsonl",
            "lock",
            "x.tmp",
        ] {
            assert!(validate_blob_name(bad).is_err(), "{bad:?}");
        }
    }
}
