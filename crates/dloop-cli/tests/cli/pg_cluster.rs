//! A cluster for worker tests: a database on a real PostgreSQL server (the shared test server
//! of `dloop_store_pg::testing`, or one of the test's own), a project whose loop's steps record
//! their idempotency keys in a file, and real `dloop worker` processes, signalled with kill(1).
//!
//! [`Cluster::check_steps`] holds what every worker test asserts: each run completed, every
//! action that really started was recorded before it started, and no step started again
//! after its result was recorded.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestProject;

/// A loop of `steps` states; each appends `start KEY` to the log, sleeps `sleep`, appends
/// `done KEY`.
pub fn steps_loop(steps: usize, sleep: &str) -> String {
    let mut text = "name: steps\ninitial: s1\ncontext:\n  log: \"\"\nstates:\n".to_owned();
    for i in 1..=steps {
        let next = if i == steps {
            "end".to_owned()
        } else {
            format!("s{}", i + 1)
        };
        text.push_str(&format!(
            "  s{i}:\n    shell: echo \"start $DLOOP_IDEMPOTENCY_KEY\" >> ${{context.log}}; \
             sleep {sleep}; echo \"done $DLOOP_IDEMPOTENCY_KEY\" >> ${{context.log}}\n    \
             next: {next}\n"
        ));
    }
    text.push_str("  end:\n    terminal: success\n");
    text
}

/// A project, a database, and the workers started on them.
pub struct Cluster {
    pub project: TestProject,
    pub url: String,
    pub keys: PathBuf,
    workers: Vec<(String, Child)>,
}

impl Cluster {
    /// A cluster on database `url` with `loop_text` as `.loops/steps.yaml`.
    pub fn new(url: String, loop_text: &str) -> Cluster {
        let project = TestProject::new();
        project.write_loop("steps", loop_text);
        let keys = project.root().join("keys.log");
        std::fs::write(&keys, "").expect("keys file");
        Cluster {
            project,
            url,
            keys,
            workers: Vec::new(),
        }
    }

    /// A client on the cluster's database.
    pub fn db(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect")
    }

    /// Submits `n` runs; returns their ids.
    pub fn submit(&self, n: usize) -> Vec<String> {
        let log = format!("log={}", self.keys.display());
        (0..n)
            .map(|_| {
                let out = self
                    .project
                    .dloop(&["submit", "steps", "-c", &log, "--store", &self.url]);
                assert_eq!(out.code, 0, "{}", out.render());
                out.stdout.trim().to_owned()
            })
            .collect()
    }

    /// Starts worker `name` (`-j jobs`, lease `ttl`); its stderr goes to `<name>.err`.
    pub fn start_worker(&mut self, name: &str, jobs: u32, ttl: &str) {
        let err = File::create(self.project.root().join(format!("{name}.err"))).expect("err");
        let child = self
            .project
            .command_in(
                self.project.root(),
                &[
                    "worker",
                    "--store",
                    &self.url,
                    "-j",
                    &jobs.to_string(),
                    "--lease-ttl",
                    ttl,
                    "--poll",
                    "50ms",
                    "--name",
                    name,
                ],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn worker");
        self.workers.push((name.to_owned(), child));
    }

    /// Worker `name`'s pid.
    pub fn pid(&self, name: &str) -> u32 {
        self.workers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
            .expect("a worker of that name")
    }

    /// Sends `signal` (a kill(1) name: KILL, STOP, CONT, TERM) to worker `name`.
    pub fn signal(&self, name: &str, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid(name).to_string())
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{signal} {name}");
    }

    /// What worker `name` printed on stderr so far.
    pub fn stderr(&self, name: &str) -> String {
        std::fs::read_to_string(self.project.root().join(format!("{name}.err"))).unwrap_or_default()
    }

    /// The runs whose lease `owner` holds now, with their tokens.
    pub fn leases_of(&self, owner: &str) -> BTreeMap<String, i64> {
        self.db()
            .query(
                "SELECT id, lease_token FROM runs
                 WHERE lease_owner = $1 AND lease_expires_at > clock_timestamp()",
                &[&owner],
            )
            .expect("query")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// How many runs are `done`.
    pub fn done(&self) -> i64 {
        self.db()
            .query_one("SELECT count(*) FROM runs WHERE queue = 'done'", &[])
            .expect("query")
            .get(0)
    }

    /// Every record of run `id`, as JSON, in seq order.
    pub fn records(&self, id: &str) -> Vec<serde_json::Value> {
        self.db()
            .query(
                "SELECT record FROM events WHERE run_id = $1 ORDER BY seq",
                &[&id],
            )
            .expect("query")
            .iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).expect("record JSON"))
            .collect()
    }

    /// The keys-log lines, counted by (what, key).
    pub fn key_lines(&self) -> BTreeMap<(String, String), usize> {
        let mut counts = BTreeMap::new();
        for line in std::fs::read_to_string(&self.keys).expect("keys").lines() {
            if let Some((what, key)) = line.split_once(' ') {
                *counts.entry((what.to_owned(), key.to_owned())).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Every run completed; every action that really started (a `start` line) was recorded
    /// first; no step started after its result was recorded, and none finished twice. Returns
    /// how many steps were re-run (recorded starts beyond the first).
    pub fn check_steps(&self, ids: &[String], steps: usize) -> usize {
        let lines = self.key_lines();
        let mut reruns = 0;
        for id in ids {
            let records = self.records(id);
            let seqs: Vec<u64> = records
                .iter()
                .map(|r| r["seq"].as_u64().expect("seq"))
                .collect();
            assert_eq!(
                seqs,
                (1..=records.len() as u64).collect::<Vec<_>>(),
                "{id}: gapless"
            );
            let last = records.last().expect("records");
            assert_eq!(last["type"], "run_completed", "{id} completed: {last}");
            let mut started: BTreeMap<String, usize> = BTreeMap::new();
            let mut finished: BTreeMap<String, usize> = BTreeMap::new();
            let mut key_of_step: BTreeMap<u64, String> = BTreeMap::new();
            for r in &records {
                match r["type"].as_str() {
                    Some("action_started") => {
                        let key = r["idempotency_key"].as_str().expect("key").to_owned();
                        assert!(
                            !finished.contains_key(&key),
                            "{id}: {key} started again after its result was recorded"
                        );
                        *started.entry(key.clone()).or_insert(0) += 1;
                        key_of_step.insert(r["step"].as_u64().expect("step"), key);
                    }
                    Some("action_finished") => {
                        let key = key_of_step[&r["step"].as_u64().expect("step")].clone();
                        *finished.entry(key).or_insert(0) += 1;
                    }
                    _ => {}
                }
            }
            assert_eq!(finished.len(), steps, "{id}: every step finished");
            assert!(finished.values().all(|n| *n == 1), "{id}: {finished:?}");
            for (key, recorded) in &started {
                let ran = lines
                    .get(&("start".to_owned(), key.clone()))
                    .copied()
                    .unwrap_or(0);
                assert!(
                    (1..=*recorded).contains(&ran),
                    "{key}: ran {ran} time(s), recorded {recorded}"
                );
                reruns += recorded - 1;
            }
        }
        reruns
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.workers {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
