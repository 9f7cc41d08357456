//! `TestProject`: a temporary project (a folder with `.git/`) in a pinned environment, and the
//! real `dloop` binary run inside it, its output rendered as one text for snapshots; and the
//! helpers of the lifecycle tests: background runs, signals, reading and verifying a run's log,
//! polling with a deadline.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    /// The exit code (-1 when a signal ended the process).
    pub code: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
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
        let out = self
            .command_in(cwd, args)
            .stdin(Stdio::null())
            .output()
            .expect("run dloop");
        self.output(&out.stdout, &out.stderr, out.status)
    }

    /// Runs `dloop ARGS` in the project root with extra environment variables.
    pub fn dloop_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self
            .command_in(self.root(), args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run dloop");
        self.output(&out.stdout, &out.stderr, out.status)
    }

    /// The `dloop ARGS` command in `cwd` with the pinned environment (and a 200 ms kill grace).
    pub fn command_in(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("dloop"));
        command
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root().join("home"))
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .env("DLOOP_KILL_GRACE_MS", "200");
        command
    }

    /// Starts `dloop ARGS` in the background (stdout and stderr piped), with extra environment.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        self.command_in(self.root(), args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dloop")
    }

    /// Waits for a background `dloop` (at most `limit`, else kills it and panics).
    pub fn wait(&self, child: Child, limit: Duration) -> Output {
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(limit) {
            Ok(out) => {
                let out = out.expect("wait for dloop");
                self.output(&out.stdout, &out.stderr, out.status)
            }
            Err(_) => {
                signal(pid, "KILL");
                panic!("dloop (pid {pid}) did not exit within {limit:?}");
            }
        }
    }

    fn output(&self, stdout: &[u8], stderr: &[u8], status: ExitStatus) -> Output {
        use std::os::unix::process::ExitStatusExt;
        Output {
            stdout: self.redact(&String::from_utf8_lossy(stdout)),
            stderr: self.redact(&String::from_utf8_lossy(stderr)),
            code: status.code().unwrap_or(-1),
            signal: status.signal(),
        }
    }

    /// The run folders (`.loops/.dloop/runs/*`), sorted.
    pub fn run_dirs(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(self.root().join(".loops/.dloop/runs")) else {
            return Vec::new();
        };
        // `.creating-*` / `.deleting-*` are a creation or deletion in progress (or cut short by
        // a kill), not runs.
        let mut dirs: Vec<PathBuf> = entries
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.is_dir()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        dirs.sort();
        dirs
    }

    /// The one run of the project: its id and folder.
    pub fn only_run(&self) -> (String, PathBuf) {
        let dirs = self.run_dirs();
        assert_eq!(dirs.len(), 1, "expected one run: {dirs:?}");
        let dir = dirs.into_iter().next().expect("one run");
        let id = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        (id, dir)
    }

    /// Waits (polling, at most `limit`) until the project has one run whose log satisfies `ok`;
    /// returns its id and folder.
    pub fn wait_for_log(
        &self,
        limit: Duration,
        ok: impl Fn(&[serde_json::Value]) -> bool,
    ) -> (String, PathBuf) {
        let found = poll(limit, || {
            let dirs = self.run_dirs();
            let dir = dirs.first()?;
            let records = read_log_lenient(&dir.join("events.jsonl"));
            ok(&records).then(|| self.only_run())
        });
        found.unwrap_or_else(|| {
            let logs: Vec<_> = self
                .run_dirs()
                .iter()
                .map(|d| fs::read_to_string(d.join("events.jsonl")).unwrap_or_default())
                .collect();
            panic!("the run's log never got there within {limit:?}: {logs:#?}")
        })
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
    /// `dloop ARGS` in the project root, pinned like [`TestProject::dloop`], not started: for
    /// runs in the background.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in(self.root(), args)
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
    "waiting",
    "rate_limit_until",
    "rate_limit_waits",
    "agent",
];
/// Calls `f` every 10 ms until it returns `Some`, at most `limit`.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `SIG<name>` to `pid` with kill(1) (the workspace denies unsafe code).
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Whether process `pid` is alive (a zombie counts as dead).
pub fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name's closing parenthesis.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
}

/// Whether the run's `lock` is free within a moment: a runner killed while it was starting an
/// action leaves the lock's descriptor in the half-started child until that child's `exec`
/// (which closes it, `O_CLOEXEC`), a window of about a millisecond; poll past it, up to 5 s.
pub fn lock_is_free(run_dir: &Path) -> bool {
    poll(Duration::from_secs(5), || {
        lock_is_free_now(run_dir).then_some(())
    })
    .is_some()
}

/// Whether the run's `lock` is free now (no process holds its flock).
pub fn lock_is_free_now(run_dir: &Path) -> bool {
    let file = fs::File::open(run_dir.join("lock")).expect("open lock");
    match file.try_lock() {
        Ok(()) => {
            file.unlock().expect("unlock");
            true
        }
        Err(fs::TryLockError::WouldBlock) => false,
        Err(fs::TryLockError::Error(e)) => panic!("try_lock: {e}"),
    }
}

/// The records of a log that parse, without checks (for polling a log being written).
pub fn read_log_lenient(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Reads `events.jsonl` of `run_dir` and checks it line by line: every line ends with a
/// newline, its `crc` is the CRC32C of its bytes before `,"crc":`, `seq` runs 1, 2, 3... with no
/// gap, and the last line closes its batch (no `_more`). Panics naming the line otherwise.
pub fn verified_log(run_dir: &Path) -> Vec<serde_json::Value> {
    let path = run_dir.join("events.jsonl");
    let bytes = fs::read(&path).expect("read events.jsonl");
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "{}: the last line has no newline",
        path.display()
    );
    let mut records = Vec::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let n = index + 1;
        let text = String::from_utf8_lossy(line);
        let at = text
            .rfind(r#","crc":""#)
            .unwrap_or_else(|| panic!("line {n} has no crc: {text}"));
        let want = format!("{:08x}", crc32c::crc32c(&line[..at]));
        let record: serde_json::Value =
            serde_json::from_slice(line).unwrap_or_else(|e| panic!("line {n}: {e}: {text}"));
        assert_eq!(record["crc"], want.as_str(), "line {n}: bad crc: {text}");
        assert_eq!(record["seq"], n as u64, "line {n}: seq gap: {text}");
        assert!(record["ts"].is_string(), "line {n}: no ts");
        assert!(record["type"].is_string(), "line {n}: no type");
        records.push(record);
    }
    if let Some(last) = records.last() {
        assert!(last.get("_more").is_none(), "the last batch is unfinished");
    }
    records
}

/// How many records have type `ty`.
pub fn count(records: &[serde_json::Value], ty: &str) -> usize {
    records.iter().filter(|r| r["type"] == ty).count()
}

/// Whether the log's last record ends a session: a terminal record or a pause.
pub fn ends_session(records: &[serde_json::Value]) -> bool {
    records.last().is_some_and(|r| {
        matches!(
            r["type"].as_str(),
            Some("run_completed" | "run_failed" | "run_cancelled" | "run_timed_out" | "run_paused")
        )
    })
}

/// The tiny seeded xorshift64* generator of the random-kill trials.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every file under `dir` (recursively) and its bytes, keyed by relative path: compare two of
/// these to prove a run folder was left byte-identical.
pub fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .expect("inside")
                    .display()
                    .to_string();
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}
