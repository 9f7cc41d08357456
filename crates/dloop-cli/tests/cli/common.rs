//! `TestProject`: a temporary project (a folder with `.git/`) in a pinned environment, and the
//! real `dloop` binary run inside it, its output rendered as one text for snapshots.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A temporary project: a folder holding an empty `.git/` and a `home/` used as `HOME`.
pub struct TestProject {
    dir: TempDir,
}

/// What one run of `dloop` printed, and how it exited.
pub struct Output {
    /// stdout, temp paths redacted.
    pub stdout: String,
    /// stderr, temp paths redacted.
    pub stderr: String,
    /// The exit code.
    pub code: i32,
}

impl Output {
    /// stdout, then stderr after a divider, then the exit code: one text for one snapshot.
    pub fn render(&self) -> String {
        let mut text = self.stdout.clone();
        if !self.stderr.is_empty() {
            text.push_str("----- stderr -----\n");
            text.push_str(&self.stderr);
        }
        text.push_str(&format!("[exit: {}]\n", self.code));
        text
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl TestProject {
    /// A new empty project.
    pub fn new() -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("dloop-test")
            .tempdir()
            .expect("temp dir");
        fs::create_dir(dir.path().join(".git")).expect("mkdir .git");
        fs::create_dir(dir.path().join("home")).expect("mkdir home");
        TestProject { dir }
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to `rel` (creating folders).
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.root().join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, text).expect("write");
        path
    }

    /// Writes a loop file `.loops/<name>.yaml`.
    pub fn write_loop(&self, name: &str, text: &str) -> PathBuf {
        self.write(&format!(".loops/{name}.yaml"), text)
    }

    /// Reads `rel`.
    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root().join(rel)).expect("read")
    }

    /// Runs `dloop ARGS` in the project root.
    pub fn dloop(&self, args: &[&str]) -> Output {
        self.dloop_in(self.root(), args)
    }

    /// Runs `dloop ARGS` in `cwd`, with HOME in the project, no color, 100 columns.
    pub fn dloop_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let out = assert_cmd::Command::cargo_bin("dloop")
            .expect("dloop binary")
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root().join("home"))
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .output()
            .expect("run dloop");
        Output {
            stdout: self.redact(&String::from_utf8_lossy(&out.stdout)),
            stderr: self.redact(&String::from_utf8_lossy(&out.stderr)),
            code: out.status.code().unwrap_or(-1),
        }
    }

    /// Replaces the project's path (and the repository's) with fixed placeholders.
    fn redact(&self, text: &str) -> String {
        let root = self.root().to_string_lossy().into_owned();
        let canonical = fs::canonicalize(self.root()).map(|p| p.to_string_lossy().into_owned());
        let mut text = text.replace(&root, "$PROJECT");
        if let Ok(canonical) = canonical {
            text = text.replace(&canonical, "$PROJECT");
        }
        text.replace(&repo_root().to_string_lossy().into_owned(), "$REPO")
    }
}

/// The repository's root (where `examples/` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Every `examples/*.yaml` file, sorted.
pub fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo_root().join("examples"))
        .expect("read examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples");
    files
}
