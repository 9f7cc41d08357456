//! Issue 7: storage has one door. Outside dloop-store, only the composition root
//! (dloop-cli/src/storage.rs) may name the file store or its files; the runtime and every
//! command go through the `Store` trait. This test reads the sources and fails on a reach past
//! it, so a second store can plug in without touching them.

use std::path::{Path, PathBuf};

use crate::common::repo_root;

/// What only the store crate and the composition root may use, and why each is a reach past
/// the trait.
const FORBIDDEN: &[(&str, &str)] = &[
    ("FileStore", "the concrete file store"),
    ("FileRun", "the file store's run handle"),
    ("EventLog", "the file store's log writer"),
    ("dloop_store::record", "the log's line format"),
    ("local_run_dir", "the file store's folder layout"),
    ("events.jsonl", "the log file"),
    ("state.json", "the snapshot file"),
    ("\"run.json\"", "the metadata file"),
    ("\"lock\"", "the lock file"),
    ("remove_dir_all", "deleting a run behind the store's back"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn commands_and_runtime_reach_storage_only_through_the_store_trait() {
    let root = repo_root();
    let composition_root = root.join("crates/dloop-cli/src/storage.rs");
    let mut files = Vec::new();
    rust_files(&root.join("crates/dloop-runtime/src"), &mut files);
    rust_files(&root.join("crates/dloop-cli/src"), &mut files);
    assert!(files.len() > 20, "found the sources: {files:?}");
    let mut reaches = Vec::new();
    for file in files.iter().filter(|f| **f != composition_root) {
        let text = std::fs::read_to_string(file).expect("read");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (pattern, what) in FORBIDDEN {
                if line.contains(pattern) {
                    reaches.push(format!(
                        "{}:{}: `{pattern}` ({what})",
                        file.strip_prefix(&root).unwrap_or(file).display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        reaches.is_empty(),
        "storage reached past the Store trait:\n{}",
        reaches.join("\n")
    );
}
