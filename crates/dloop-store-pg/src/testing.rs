//! A throwaway PostgreSQL server for tests (feature `testing`): Debian's `initdb` and `pg_ctl`
//! (`/usr/lib/postgresql/*/bin`, or `DLOOP_PG_BIN`), a data folder in a temp folder, listening
//! only on a unix socket there (`listen_addresses=''`), `fsync=off` for speed. As root the
//! server runs as the `postgres` user (`runuser`), since PostgreSQL refuses to run as root.
//!
//! Invariants: a server never outlives its test process: a guardian shell started with it
//! stops it (`pg_ctl stop -m immediate`) and removes its folder once the test process is gone,
//! even after a panic or a SIGKILL; tests share one server per test binary
//! ([`TestServer::shared`]) and take one database each ([`TestServer::database`]).
//! Without the binaries, [`TestServer::shared`] returns `None` after saying why (the test then
//! skips), except under CI (`CI` set), where it panics: CI must run these tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running test server.
#[derive(Debug)]
pub struct TestServer {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    next_db: AtomicU32,
}

/// The folder holding `initdb` and `pg_ctl`, if any.
pub fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DLOOP_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

impl TestServer {
    /// The server shared by the tests of this process, started at the first call; `None`
    /// (after printing why) when the binaries are missing outside CI.
    ///
    /// # Panics
    /// When the server cannot start, or under CI when the binaries are missing.
    pub fn shared() -> Option<&'static TestServer> {
        static SERVER: OnceLock<Option<TestServer>> = OnceLock::new();
        SERVER
            .get_or_init(|| match find_bin() {
                Some(_) => Some(TestServer::start().expect("start the test PostgreSQL server")),
                None if std::env::var_os("CI").is_some() => {
                    panic!("CI: PostgreSQL's initdb not found under /usr/lib/postgresql/*/bin")
                }
                None => {
                    eprintln!(
                        "skipping: PostgreSQL's initdb/pg_ctl not found under \
                         /usr/lib/postgresql/*/bin (apt-get install postgresql, or set \
                         DLOOP_PG_BIN)"
                    );
                    None
                }
            })
            .as_ref()
    }

    /// Starts a new server of its own (for a test that restarts it).
    ///
    /// # Errors
    /// The binaries are missing or a step failed (with its output).
    pub fn start() -> Result<TestServer, String> {
        let bin = find_bin().ok_or("PostgreSQL's initdb not found")?;
        let dir = tempfile::Builder::new()
            .prefix("dloop-pg-")
            .tempdir()
            .map_err(|e| format!("temp folder: {e}"))?
            .keep();
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir))?;
        }
        let server = TestServer {
            dir,
            bin,
            as_postgres,
            next_db: AtomicU32::new(0),
        };
        server.guard()?;
        let data = server.data();
        run(server
            .tool("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data))?;
        server.pg_ctl("start")?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The folder of the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl(&self, what: &str) -> Result<(), String> {
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB",
            self.dir.display()
        );
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "60", "-m", "fast", "-o"]);
        cmd.arg(options)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .arg(what);
        run(&mut cmd)
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    ///
    /// # Errors
    /// `pg_ctl` failed.
    pub fn stop(&self) -> Result<(), String> {
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "fast", "stop"]);
        run(&mut cmd)
    }

    /// Starts the stopped server again.
    ///
    /// # Errors
    /// `pg_ctl` failed.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl("start")
    }

    /// A URL for database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres:///{db}?host={}&user=postgres", self.dir.display())
    }

    /// Creates a fresh database, migrated to the latest schema, and returns its URL.
    ///
    /// # Panics
    /// When the server refuses.
    pub fn database(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        let mut admin =
            postgres::Client::connect(&self.url("postgres"), postgres::NoTls).expect("connect");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let url = self.url(&name);
        crate::PgStore::migrate(&url).expect("migrate");
        url
    }

    /// A guardian shell: when this process is gone, stop the server and remove its folder.
    fn guard(&self) -> Result<(), String> {
        let runuser = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {runuser}'{bin}/pg_ctl' -D '{dir}/data' -m immediate stop >/dev/null 2>&1; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            bin = self.bin.display(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("guardian: {e}"))
    }
}

impl Drop for TestServer {
    /// Stops the server and removes its folder (the shared server is left to its guardian).
    fn drop(&mut self) {
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"]);
        let _ = run(&mut cmd);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
