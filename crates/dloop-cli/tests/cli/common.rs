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

impl TestProject {
    /// Runs `dloop ARGS` in the project root with extra environment variables.
    pub fn dloop_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self
            .command(args)
            .envs(env.iter().copied())
            .output()
            .expect("run dloop");
        Output {
            stdout: self.redact(&String::from_utf8_lossy(&out.stdout)),
            stderr: self.redact(&String::from_utf8_lossy(&out.stderr)),
            code: out.status.code().unwrap_or(-1),
        }
    }

    /// `dloop ARGS` in the project root, pinned like [`TestProject::dloop`], not started: for
    /// runs in the background.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dloop"));
        cmd.args(args)
            .current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root().join("home"))
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100");
        cmd
    }

    /// The ids of the project's runs (folder names), sorted.
    pub fn run_ids(&self) -> Vec<String> {
        let dir = self.root().join(".loops/.dloop/runs");
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids
    }
}

/// Replaces what changes from run to run with placeholders of the same width (so columns stay
/// aligned): the time and suffix in run ids, clock times, dates, and durations (a duration and
/// the spaces after it become `[DUR]` padded to the same length).
pub fn redact_runs(text: &str) -> String {
    let id = regex::Regex::new(r"-\d{8}T\d{6}-[0-9a-f]{4}\b").expect("regex");
    let text = id.replace_all(text, "-YYYYMMDDTHHMMSS-XXXX");
    let date_time = regex::Regex::new(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}").expect("regex");
    let text = date_time.replace_all(&text, "YYYY-MM-DD HH:MM:SS");
    let clock = regex::Regex::new(r"\b\d{2}:\d{2}:\d{2}\.\d{3}\b").expect("regex");
    let text = clock.replace_all(&text, "HH:MM:SS.mmm");
    let duration = regex::Regex::new(r"\b(\d+ms|\d+\.\ds|\d+m\d{2}s|\d+h\d{2}m|\d+d\d{2}h)( *)")
        .expect("regex");
    duration
        .replace_all(&text, |caps: &regex::Captures<'_>| {
            // Keep a separating space when the placeholder is wider than the duration.
            let width = caps[0].len().max(5 + usize::from(!caps[2].is_empty()));
            format!("{:<width$}", "[DUR]")
        })
        .into_owned()
}

/// Loops the run tests share: `quick` completes in one step, `twostep` takes two (so
/// `--max-steps 1` pauses it), `broken` fails, `slow` sleeps about a second.
pub fn project_with_loops() -> TestProject {
    let p = TestProject::new();
    p.write_loop(
        "quick",
        "initial: a\nstates:\n  a:\n    shell: echo quick\n    next: done\n  done:\n    terminal: success\n",
    );
    p.write_loop(
        "twostep",
        "initial: a\nstates:\n  a:\n    shell: echo one\n    capture: first\n    next: b\n  b:\n    shell: echo two\n    next: done\n  done:\n    terminal: success\n",
    );
    p.write_loop(
        "broken",
        "initial: a\nstates:\n  a:\n    shell: echo broken; exit 1\n    on: { success: done, failure: bad }\n  done:\n    terminal: success\n  bad:\n    terminal: failure\n",
    );
    p.write_loop(
        "slow",
        "initial: a\nstates:\n  a:\n    shell: sleep 1; echo slept\n    next: done\n  done:\n    terminal: success\n",
    );
    p
}

/// Runs `dloop run ARGS` and asserts its exit code; returns the new run's id.
pub fn run_loop(p: &TestProject, args: &[&str], code: i32) -> String {
    let before = p.run_ids();
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    let out = p.dloop(&full);
    assert_eq!(out.code, code, "{}", out.render());
    new_run(p, &before)
}

/// The one run id in the project that is not in `before`.
pub fn new_run(p: &TestProject, before: &[String]) -> String {
    let mut new: Vec<String> = p
        .run_ids()
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(new.len(), 1, "expected one new run, got {new:?}");
    new.remove(0)
}

/// The keys of the first object of a pretty-printed JSON array, in order.
pub fn first_object_keys(stdout: &str) -> Vec<String> {
    let key = regex::Regex::new(r#"^    "([a-z_]+)":"#).expect("regex");
    stdout
        .lines()
        .skip(1)
        .take_while(|l| *l != "  }," && *l != "  }")
        .filter_map(|l| key.captures(l).map(|c| c[1].to_owned()))
        .collect()
}

/// The first keys every run row has (`inspect --json`'s shape), in order.
pub const RUN_KEYS: &[&str] = &[
    "id",
    "loop",
    "status",
    "reason",
    "state",
    "step",
    "started_at",
    "elapsed_ms",
    "context",
    "captures",
    "states",
    "last_error",
    "max_steps",
    "sessions",
    "live",
    "message",
];
