//! Issue 14's browser test of `dloop serve`, in a test binary of its own (a headless browser is
//! heavy; it should not compete with the CLI tests): Debian's Chromium, headless, driven over
//! the DevTools protocol on a pipe (`--remote-debugging-pipe`: NUL-terminated JSON, commands
//! in on fd 3, answers out on fd 4; a shell wrapper wires our pipes to those fds, so no unsafe
//! code and no websocket client). The page loads, lists a run the test started, and shows the
//! run's next step within a second of its record being durable.
//!
//! Without Chromium the test fails under CI (`CI=true`; `.ci/run` installs it) and is skipped
//! with a note elsewhere. A second test clicks `--allow-control`'s Stop and Resume buttons: the
//! browser's own request (its Origin, the page's CSRF token) gets through.

#[allow(dead_code)]
#[path = "../cli/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../cli/serve_client.rs"]
mod serve_client;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{TestProject, poll};
use serve_client::Server;

/// Generous limits for what is not under test (a cold browser on a busy 2-core machine).
const LIMIT: Duration = Duration::from_secs(60);
/// The issue's requirement: a new step shows within a second of being written.
const LIVE_LIMIT: Duration = Duration::from_secs(1);

/// Finds Debian's Chromium on PATH.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Chromium, or `None` with a note when it is missing outside CI; under CI a missing Chromium
/// fails the test.
fn chromium_or_skip() -> Option<PathBuf> {
    let exe = chromium();
    if exe.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium is not installed; .ci/run installs it (apt-get install chromium)");
        }
        eprintln!("note: chromium is not installed; skipping the browser test of `dloop serve`");
    }
    exe
}

/// A headless Chromium driven over its DevTools pipe; killed (its whole process group) on drop.
struct Browser {
    child: Child,
    commands: ChildStdin,
    answers: Receiver<Value>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch(exe: &PathBuf) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("dloop-web-chromium")
            .tempdir()
            .expect("profile dir");
        let mut child = Command::new("sh")
            .arg("-c")
            // fd 3 (chromium reads commands) is our stdin pipe, fd 4 (it writes answers) our
            // stdout pipe; its own stdin and stdout go nowhere.
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let commands = child.stdin.take().expect("stdin");
        let out = child.stdout.take().expect("stdout");
        let (tx, answers) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        message.pop();
                        if let Ok(value) = serde_json::from_slice::<Value>(&message)
                            && tx.send(value).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            commands,
            answers,
            next_id: 0,
            _profile: profile,
        }
    }

    /// Sends a DevTools command (to `session`'s page when given) and returns its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        self.commands.flush().expect("flush");
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(answer) if answer["id"] == id => {
                    assert!(answer.get("error").is_none(), "{method} failed: {answer}");
                    return answer["result"].clone();
                }
                // Events and other answers.
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("chromium did not answer {method}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chromium exited during {method}"),
            }
        }
    }

    /// Opens a page at `url`; returns its session id.
    fn open(&mut self, url: &str) -> String {
        let target = self.call(None, "Target.createTarget", json!({ "url": url }));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned()
    }

    /// Evaluates `expression` in the page and returns its value.
    fn eval(&mut self, session: &str, expression: &str) -> Value {
        let result = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true`, at most `limit`; returns whether it got there.
    fn wait_true(&mut self, session: &str, expression: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            if self.eval(session, expression) == json!(true) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: the browser and its helper processes.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first step waits for the file `gate`; the second is the one the page must show live.
const GATED: &str = "initial: wait\nstates:\n  wait:\n    shell: \"while [ ! -e gate ]; do sleep 0.02; done; echo through\"\n    next: second\n  second:\n    shell: 'echo second-step; echo \"<img src=x onerror=window.pwned=1><script>window.pwned=2</script>\"'\n    next: done\n  done:\n    terminal: success\n";

/// Opens the gate when dropped, so a failing test leaves no run waiting forever.
struct Gate(PathBuf);

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

#[test]
fn the_page_lists_a_run_and_shows_a_new_step_within_a_second() {
    let Some(exe) = chromium_or_skip() else {
        return;
    };
    let p = TestProject::new();
    p.write_loop("gated", GATED);
    let gate = Gate(p.root().join("gate"));
    let out = p.dloop(&["run", "gated", "-b"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let id = out.stdout.trim().to_owned();
    let server = Server::start(&p, &["--addr", "127.0.0.1:0"], &[]);
    let mut browser = Browser::launch(&exe);

    let session = browser.open(&server.url);

    // The runs list shows the run, live.
    let listed = format!(
        r#"(() => {{ const tr = document.querySelector('tr[data-run-id="{id}"]');
             return tr !== null && tr.closest('table').dataset.group === 'live'; }})()"#
    );
    assert!(
        browser.wait_true(&session, &listed, LIMIT),
        "the runs list never showed {id}: {}",
        browser.eval(&session, "document.body.innerText")
    );

    // Its page: the waiting step in the timeline, the states diagram, the feed connected.
    browser.call(
        Some(&session),
        "Page.navigate",
        json!({ "url": format!("{}runs/{id}", server.url) }),
    );
    let ready = r#"document.querySelector('#steps tr[data-state="wait"]') !== null
        && document.querySelector('#diagram g.node.current[data-state="wait"]') !== null
        && document.getElementById('conn').classList.contains('on')"#;
    assert!(
        browser.wait_true(&session, ready, LIMIT),
        "the run's page never showed its first step: {}",
        browser.eval(&session, "document.body.innerText")
    );
    let second = r#"document.querySelector('#steps tr[data-state="second"]') !== null"#;
    assert_eq!(browser.eval(&session, second), json!(false));

    // Let one more step happen; time from its record being durable to the page showing it.
    drop(gate);
    let log = server_log(&p, &id);
    let written = poll(LIMIT, || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.lines()
            .any(|l| l.contains(r#""type":"state_entered""#) && l.contains(r#""state":"second""#))
            .then(Instant::now)
    })
    .expect("the run entered its second step");
    let shown = browser.wait_true(&session, second, LIVE_LIMIT);
    let took = written.elapsed();
    assert!(
        shown,
        "the new step was not on the page {took:?} after it was written: {}",
        browser.eval(&session, "document.body.innerText")
    );
    eprintln!("the new step showed {took:?} after its record was durable");

    // The step's output (attacker-controlled) shows as text, never as markup.
    let output = r#"document.getElementById('output').textContent.includes('<img src=x onerror=window.pwned=1>')"#;
    assert!(
        browser.wait_true(&session, output, LIMIT),
        "the new step's output never showed: {}",
        browser.eval(&session, "document.getElementById('output').textContent")
    );
    let markup = "window.pwned === undefined && document.querySelector('#output img, #output script') === null";
    assert_eq!(
        browser.eval(&session, markup),
        json!(true),
        "output ran as markup"
    );

    // The path taken is drawn: the edge wait -> second lights up.
    let path = r#"document.querySelector('#diagram g.edge.taken[data-from="wait"][data-to="second"]') !== null"#;
    assert!(browser.wait_true(&session, path, LIMIT));
}

#[test]
fn with_allow_control_the_buttons_stop_and_resume_a_run() {
    let Some(exe) = chromium_or_skip() else {
        return;
    };
    let p = TestProject::new();
    p.write_loop("gated", GATED);
    let gate = Gate(p.root().join("gate"));
    let out = p.dloop(&["run", "gated", "-b"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let id = out.stdout.trim().to_owned();
    let status = || p.dloop(&["inspect", &id, "--json"]).json()["status"].clone();
    let server = Server::start(&p, &["--addr", "127.0.0.1:0", "--allow-control"], &[]);
    let mut browser = Browser::launch(&exe);
    let url = format!("{}runs/{id}", server.url);
    let session = browser.open(&url);

    // The page's own request (the browser's Origin, the embedded CSRF token) is accepted.
    let stop = "(() => { const b = document.getElementById('stop'); \
        if (!b || b.disabled) return false; b.click(); return true; })()";
    assert!(browser.wait_true(&session, stop, LIMIT), "no Stop button");
    assert!(poll(LIMIT, || (status() == "paused").then_some(())).is_some());
    let resume = "(() => { const b = document.getElementById('resume'); \
        if (!b || b.disabled) return false; b.click(); return true; })()";
    assert!(
        browser.wait_true(&session, resume, LIMIT),
        "the page never offered Resume: {}",
        browser.eval(&session, "document.body.innerText")
    );
    assert!(poll(LIMIT, || (status() == "running").then_some(())).is_some());
    drop(gate);
    assert!(poll(LIMIT, || (status() == "completed").then_some(())).is_some());
}

/// A run of 610 steps between two states, paused by `max_steps`.
const PINGPONG: &str = "initial: a\nlimits:\n  max_steps: 610\nstates:\n  a:\n    shell: \"true\"\n    next: b\n  b:\n    shell: \"true\"\n    on: { success: a, failure: done }\n  done:\n    terminal: success\n";

/// A long run's page showed every step (25,000 rows for a 100,000-record run, redrawn on each
/// new step): now the newest 500, a button for earlier ones, and the diagram still marks the
/// whole path.
#[test]
fn a_long_runs_page_shows_its_newest_steps_and_loads_earlier_ones() {
    let Some(exe) = chromium_or_skip() else {
        return;
    };
    let p = TestProject::new();
    p.write_loop("pingpong", PINGPONG);
    let out = p.dloop(&["run", "pingpong"]);
    assert_eq!(out.code, 3, "paused at max_steps: {}", out.render());
    let (id, _) = p.only_run();
    let server = Server::start(&p, &["--addr", "127.0.0.1:0"], &[]);
    let mut browser = Browser::launch(&exe);
    let session = browser.open(&format!("{}runs/{id}", server.url));
    let rows = "document.querySelectorAll('#steps tr[data-step]').length";
    assert!(
        browser.wait_true(&session, &format!("{rows} === 500"), LIMIT),
        "rows: {}",
        browser.eval(&session, rows)
    );
    let button = "document.getElementById('earlier')";
    let label = browser.eval(&session, &format!("{button}.textContent"));
    assert_eq!(label, json!("110 earlier steps: show 110 more"));
    let path = "document.querySelectorAll('#diagram g.node.visited').length === 2 \
        && document.querySelectorAll('#diagram g.edge.taken').length === 2";
    assert!(
        browser.wait_true(&session, path, LIMIT),
        "the whole path is marked"
    );
    browser.eval(&session, &format!("{button}.click()"));
    assert!(
        browser.wait_true(
            &session,
            &format!("{rows} === 610 && !{button} && document.querySelector('#steps tr[data-step]').getAttribute('data-step') === '1'"),
            LIMIT
        ),
        "rows after loading: {}",
        browser.eval(&session, rows)
    );
}

/// The run's log file (read by the test only, to time the record's write).
fn server_log(p: &TestProject, id: &str) -> PathBuf {
    p.root()
        .join(".loops/.dloop/runs")
        .join(id)
        .join("events.jsonl")
}
