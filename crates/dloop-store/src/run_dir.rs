//! The runtime folder's layout and the run folder's creation:
//!
//! ```text
//! <root>/                     usually .loops/.dloop/
//!   runs/<run-id>/            0700, created with O_EXCL semantics (create_dir)
//!     run.json                written once (temp, fsync, rename, fsync folder)
//!     events.jsonl            the log (0600)
//!     state.json              the snapshot (0600)
//!     lock                    the run lock (0600)
//!     outputs/  work/         0700
//!   scopes/                   scope lock registry (the runtime's)
//! ```
//!
//! Invariants: a run id is checked ([`validate_run_id`]) before it is joined to a path, so no id
//! escapes `runs/`; creation never reuses an existing folder.

use std::collections::BTreeMap;
use std::fs::DirBuilder;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use dloop_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

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
    // Fields added later must carry `#[serde(default)]` so older run.json files keep loading.
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

    /// `<root>/scopes`.
    pub fn scopes_dir(&self) -> PathBuf {
        self.root.join("scopes")
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

fn dir_builder(recursive: bool) -> DirBuilder {
    let mut b = DirBuilder::new();
    b.recursive(recursive).mode(0o700);
    b
}

/// Creates `runs/<id>/` with `outputs/` and `work/` (0700). Fails with
/// [`StoreError::AlreadyExists`] when the folder exists: `create_dir` is atomic, so of two
/// processes creating the same id exactly one wins; the loser retries with another id.
pub(crate) fn create_run_dir(layout: &Layout, id: &str) -> Result<PathBuf> {
    let dir = layout.run_dir(id)?;
    let runs = layout.runs_dir();
    dir_builder(true)
        .create(&runs)
        .map_err(|e| StoreError::io("create", &runs, e))?;
    match dir_builder(false).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(StoreError::AlreadyExists {
                run_id: id.to_owned(),
            });
        }
        Err(e) => return Err(StoreError::io("create", &dir, e)),
    }
    for sub in ["outputs", "work"] {
        let p = dir.join(sub);
        dir_builder(false)
            .create(&p)
            .map_err(|e| StoreError::io("create", &p, e))?;
    }
    Ok(dir)
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

/// Reads `run.json` of the run folder `dir`.
pub(crate) fn read_meta(dir: &Path, id: &str) -> Result<RunMeta> {
    let path = meta_path(dir);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => StoreError::NotFound {
            run_id: id.to_owned(),
        },
        _ => StoreError::io("read", &path, e),
    })?;
    serde_json::from_slice(&bytes).map_err(|source| StoreError::BadMeta { path, source })
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
        let dir = create_run_dir(&layout, "r1").expect("creates");
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(matches!(
            create_run_dir(&layout, "r1"),
            Err(StoreError::AlreadyExists { .. })
        ));
    }
}
