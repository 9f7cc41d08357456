//! Sub-loops of submitted runs on workers, on a real PostgreSQL server (see workers.rs): the
//! children come from the loops kept with the run at submit (never the worker's checkout),
//! run under the worker's leases, and a worker SIGKILLed mid-child is taken over from the
//! child's own log. Each test names the server; without PostgreSQL's binaries they skip.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use dloop_store_pg::testing::TestServer;

use crate::common::{TestProject, signal};
use crate::pg_cluster::wait_for;

/// parent → kid → grand; each appends a line to the file `marks` of the project.
const PARENT: &str = "\
name: parent
initial: call
states:
  call:
    loop: kid
    on: { success: after, _: failed }
  after:
    shell: echo after >> marks
    next: done
  done:
    terminal: success
  failed:
    terminal: failure
";

const KID: &str = "\
name: kid
initial: first
states:
  first:
    shell: echo kid-first >> marks
    next: deeper
  deeper:
    loop: grand
    on: { success: done, _: failed }
  done:
    terminal: success
  failed:
    terminal: failure
";

const GRAND: &str = "\
name: grand
initial: a
states:
  a:
    shell: echo grand-bundled >> marks
    next: done
  done:
    terminal: success
";

/// A child whose second step waits for the file `go`; each step appends to `marks`.
const SLOW: &str = "\
name: slow
initial: first
states:
  first:
    shell: echo slow-first >> marks
    next: wait
  wait:
    shell: echo slow-waiting >> marks; while [ ! -f go ]; do sleep 0.05; done; echo slow-wait >> marks
    next: done
  done:
    terminal: success
";

fn project(url: &str, parent_child: &str) -> TestProject {
    let p = TestProject::new();
    p.write_loop(
        "parent",
        &PARENT.replace("loop: kid", &format!("loop: {parent_child}")),
    );
    p.write_loop("kid", KID);
    p.write_loop("grand", GRAND);
    p.write_loop("slow", SLOW);
    p.write(".loops/config.yaml", &format!("store: \"{url}\"\n"));
    p
}

fn submit(p: &TestProject, loop_name: &str) -> String {
    let out = p.dloop(&["submit", loop_name]);
    assert_eq!(out.code, 0, "{}", out.render());
    out.stdout.trim().to_owned()
}

fn marks(p: &TestProject) -> Vec<String> {
    std::fs::read_to_string(p.root().join("marks"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn spawn_worker(p: &TestProject, name: &str, extra: &[&str]) -> Child {
    let err = std::fs::File::create(p.root().join(format!("{name}.err"))).expect("err file");
    p.command_in(
        p.root(),
        &[
            &[
                "worker",
                "--lease-ttl",
                "2s",
                "--poll",
                "50ms",
                "--name",
                name,
            ][..],
            extra,
        ]
        .concat(),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(err)
    .spawn()
    .expect("spawn worker")
}

fn stderr_of(root: &Path, name: &str) -> String {
    std::fs::read_to_string(root.join(format!("{name}.err"))).unwrap_or_default()
}

fn status_of(p: &TestProject, id: &str) -> String {
    let out = p.dloop(&["inspect", id, "--json"]);
    out.json()["status"].as_str().unwrap_or_default().to_owned()
}

/// The id of the sub-loop run `parent`'s log names.
fn child_of(p: &TestProject, parent: &str) -> Option<String> {
    let logs = p.dloop(&["logs", parent, "--json"]);
    logs.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["type"] == "sub_loop_started")
        .and_then(|r| r["child_run_id"].as_str().map(str::to_owned))
}

#[test]
fn a_submitted_parent_runs_its_children_from_the_bundle_on_a_worker_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let url = server.database();
    let p = project(&url, "kid");
    let parent = submit(&p, "parent");
    // The checkout changes after the submit: the worker must not see it.
    std::fs::remove_file(p.root().join(".loops/kid.yaml")).expect("delete kid");
    p.write_loop("grand", &GRAND.replace("grand-bundled", "grand-edited"));
    let worker = spawn_worker(&p, "w", &["--exit-when-idle"]);
    let out = p.wait(worker, Duration::from_secs(60));
    assert_eq!(
        out.code,
        0,
        "{}\n{}",
        out.render(),
        stderr_of(p.root(), "w")
    );
    assert_eq!(
        status_of(&p, &parent),
        "completed",
        "{}",
        stderr_of(p.root(), "w")
    );
    assert_eq!(marks(&p), ["kid-first", "grand-bundled", "after"]);

    let kid = child_of(&p, &parent).expect("the parent names its child");
    let grand = child_of(&p, &kid).expect("the child names its own child");
    for id in [&kid, &grand] {
        assert_eq!(status_of(&p, id), "completed");
    }
    // Children are never queued and hold no lease once they ended; each keeps the bundle.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    for id in [&kid, &grand] {
        let row = db
            .query_one(
                "SELECT queue, lease_expires_at IS NULL,
                        (SELECT count(*) FROM blobs b WHERE b.run_id = r.id
                           AND b.name = 'sub-loops.json')
                 FROM runs r WHERE id = $1",
                &[id],
            )
            .expect("row");
        assert_eq!(row.get::<_, Option<String>>(0), None, "{id} was queued");
        assert!(row.get::<_, bool>(1), "{id} still holds a lease");
        assert!(row.get::<_, i64>(2) > 0, "{id} does not keep the bundle");
    }

    // `status` shows the child right under the parent on this store.
    let status = p.dloop(&["status", "--all"]);
    let lines: Vec<&str> = status.stdout.lines().collect();
    let parent_row = lines.iter().position(|l| l.starts_with(parent.as_str()));
    let kid_row = lines.iter().position(|l| l.starts_with("└ kid-"));
    assert_eq!(kid_row, parent_row.map(|r| r + 1), "{}", status.stdout);
}

#[test]
fn a_worker_killed_mid_child_is_taken_over_from_the_childs_own_log_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let p = project(&server.database(), "slow");
    // A first step puts the child's lease out of phase with the parent's (its heartbeat
    // renews it up to 0.4 s later): when b claims the parent, the child's orphaned lease is
    // still live, and b must end it rather than wait or give up.
    p.write_loop(
        "parent",
        &PARENT.replace("loop: kid", "loop: slow").replace(
            "initial: call\nstates:\n",
            "initial: before\nstates:\n  before:\n    shell: sleep 0.4\n    next: call\n",
        ),
    );
    let parent = submit(&p, "parent");
    let mut a = spawn_worker(&p, "a", &[]);
    assert!(
        wait_for(Duration::from_secs(60), || marks(&p)
            .contains(&"slow-waiting".to_owned())),
        "worker a never reached the child's second step:\n{}",
        stderr_of(p.root(), "a")
    );
    signal(a.id(), "KILL");
    let _ = a.wait();
    std::fs::write(p.root().join("go"), "").expect("go");
    let b = spawn_worker(&p, "b", &[]);
    let done = wait_for(Duration::from_secs(60), || {
        status_of(&p, &parent) == "completed"
    });
    signal(b.id(), "TERM");
    let b_out = p.wait(b, Duration::from_secs(30));
    assert!(
        done,
        "b never completed the parent:\n{}",
        stderr_of(p.root(), "b")
    );
    assert_eq!(b_out.code, 0, "{}", stderr_of(p.root(), "b"));
    // The child's finished first step never ran again; its interrupted wait ran once more
    // (the killed worker's own attempt, orphaned in its process group, may finish too).
    let marks = marks(&p);
    let count = |m: &str| marks.iter().filter(|x| *x == m).count();
    assert_eq!(
        (count("slow-first"), count("slow-waiting"), count("after")),
        (1, 2, 1),
        "{marks:?}\n{}",
        stderr_of(p.root(), "b")
    );
    assert!(count("slow-wait") >= 1, "{marks:?}");
    assert_eq!(marks.last().map(String::as_str), Some("after"), "{marks:?}");
    let child = child_of(&p, &parent).expect("child");
    assert_eq!(status_of(&p, &child), "completed");
    let logs = p.dloop(&["logs", &child, "--json"]);
    let resumed = logs
        .stdout
        .lines()
        .filter(|l| l.contains("\"type\":\"run_resumed\""))
        .count();
    assert_eq!(
        resumed, 1,
        "b resumed the child from its log:\n{}",
        logs.stdout
    );
}

#[test]
fn stop_and_submit_resume_of_a_parent_carry_its_child_and_a_child_is_never_queued_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let p = project(&server.database(), "slow");
    let parent = submit(&p, "parent");
    let w = spawn_worker(&p, "w", &[]);
    assert!(
        wait_for(Duration::from_secs(60), || marks(&p)
            .contains(&"slow-waiting".to_owned())),
        "the worker never reached the child's second step:\n{}",
        stderr_of(p.root(), "w")
    );
    let child = child_of(&p, &parent).expect("child");
    let stop = p.dloop(&["stop", &parent]);
    assert_eq!(stop.code, 0, "{}", stop.render());
    assert!(
        wait_for(Duration::from_secs(30), || status_of(&p, &parent)
            == "paused"),
        "the parent never paused:\n{}",
        stderr_of(p.root(), "w")
    );
    assert_eq!(status_of(&p, &child), "paused");

    // The child is not handed to the workers on its own; its parent is.
    let refused = p.dloop(&["submit", "--resume", &child]);
    assert_eq!(refused.code, 2, "{}", refused.render());
    assert!(refused.stderr.contains(&parent), "{}", refused.render());
    std::fs::write(p.root().join("go"), "").expect("go");
    let again = p.dloop(&["submit", "--resume", &parent]);
    assert_eq!(again.code, 0, "{}", again.render());
    let done = wait_for(Duration::from_secs(60), || {
        status_of(&p, &parent) == "completed"
    });
    signal(w.id(), "TERM");
    let _ = p.wait(w, Duration::from_secs(30));
    assert!(
        done,
        "the parent never completed:\n{}",
        stderr_of(p.root(), "w")
    );
    assert_eq!(status_of(&p, &child), "completed");
    assert_eq!(
        marks(&p).iter().filter(|m| *m == "slow-first").count(),
        1,
        "{:?}",
        marks(&p)
    );
}

#[test]
fn a_submitted_run_resumed_here_still_starts_its_children_from_its_bundle_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let p = project(&server.database(), "kid");
    p.write_loop(
        "parent",
        &PARENT.replace(
            "initial: call\nstates:\n",
            "initial: before\nstates:\n  before:\n    shell: echo before >> marks\n    next: call\n",
        ),
    );
    let out = p.dloop(&["submit", "parent", "--max-steps", "1"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let parent = out.stdout.trim().to_owned();
    let worker = spawn_worker(&p, "w", &["--exit-when-idle"]);
    let out = p.wait(worker, Duration::from_secs(60));
    assert_eq!(out.code, 0, "{}", stderr_of(p.root(), "w"));
    assert_eq!(
        status_of(&p, &parent),
        "paused",
        "out of steps before the child"
    );
    assert_eq!(marks(&p), ["before"]);

    // The checkout changed since the submit; the run resumed here does not see it.
    std::fs::remove_file(p.root().join(".loops/kid.yaml")).expect("delete kid");
    p.write_loop("grand", &GRAND.replace("grand-bundled", "grand-edited"));
    let resumed = p.dloop(&["resume", &parent, "--max-steps", "10"]);
    assert_eq!(resumed.code, 0, "{}", resumed.render());
    assert_eq!(marks(&p), ["before", "kid-first", "grand-bundled", "after"]);

    // A fork keeps the source's bundle: its children come from it too.
    let fork = p.dloop(&["fork", &parent, "--at", "1"]);
    assert_eq!(fork.code, 0, "{}", fork.render());
    assert_eq!(
        marks(&p)[4..],
        ["kid-first", "grand-bundled", "after"],
        "{:?}",
        marks(&p)
    );
}

#[test]
fn cancel_of_a_parent_running_its_child_on_a_worker_cancels_both_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let p = project(&server.database(), "slow");
    let parent = submit(&p, "parent");
    let w = spawn_worker(&p, "w", &[]);
    assert!(
        wait_for(Duration::from_secs(60), || marks(&p)
            .contains(&"slow-waiting".to_owned())),
        "the worker never reached the child's second step:\n{}",
        stderr_of(p.root(), "w")
    );
    let child = child_of(&p, &parent).expect("child");
    let cancel = p.dloop(&["cancel", &parent]);
    assert_eq!(cancel.code, 0, "{}", cancel.render());
    assert!(
        cancel
            .stderr
            .contains(&format!("cancelled its sub-loop run {child}")),
        "{}",
        cancel.render()
    );
    assert_eq!(status_of(&p, &parent), "cancelled");
    assert_eq!(status_of(&p, &child), "cancelled");
    // Nothing is left for a worker: the worker goes idle and the parent is never claimed again.
    signal(w.id(), "TERM");
    let out = p.wait(w, Duration::from_secs(30));
    assert_eq!(out.code, 0, "{}", stderr_of(p.root(), "w"));
    assert!(!marks(&p).contains(&"after".to_owned()), "{:?}", marks(&p));
}

#[test]
fn submit_refuses_a_run_whose_grandchild_loop_is_missing_and_queues_nothing_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let url = server.database();
    let p = project(&url, "kid");
    std::fs::remove_file(p.root().join(".loops/grand.yaml")).expect("delete grand");
    let out = p.dloop(&["submit", "parent"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("grand"), "{}", out.render());
    let status = p.dloop(&["status", "--all", "--json"]);
    let runs = status.json();
    let parents = runs
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["loop"] == "parent")
        .count();
    assert_eq!(parents, 0, "nothing was queued: {runs}");
}

#[test]
fn a_worker_shut_down_mid_child_hands_the_parent_back_and_releases_the_child_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let url = server.database();
    let p = project(&url, "slow");
    let parent = submit(&p, "parent");
    let a = spawn_worker(&p, "a", &[]);
    assert!(
        wait_for(Duration::from_secs(60), || marks(&p)
            .contains(&"slow-waiting".to_owned())),
        "worker a never reached the child's second step:\n{}",
        stderr_of(p.root(), "a")
    );
    let child = child_of(&p, &parent).expect("child");
    signal(a.id(), "TERM");
    let out = p.wait(a, Duration::from_secs(30));
    assert_eq!(out.code, 0, "{}", stderr_of(p.root(), "a"));
    // The parent is queued again at once; the child holds no lease and is not queued.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let row = |db: &mut postgres::Client, id: &str| {
        let r = db
            .query_one(
                "SELECT queue, coalesce(lease_expires_at > clock_timestamp(), false)
                 FROM runs WHERE id = $1",
                &[&id],
            )
            .expect("row");
        (r.get::<_, Option<String>>(0), r.get::<_, bool>(1))
    };
    assert_eq!(row(&mut db, &parent), (Some("queued".to_owned()), false));
    assert_eq!(row(&mut db, &child), (None, false));
    std::fs::write(p.root().join("go"), "").expect("go");
    let b = spawn_worker(&p, "b", &["--exit-when-idle"]);
    let out = p.wait(b, Duration::from_secs(60));
    assert_eq!(out.code, 0, "{}", stderr_of(p.root(), "b"));
    assert_eq!(
        status_of(&p, &parent),
        "completed",
        "{}",
        stderr_of(p.root(), "b")
    );
    assert_eq!(status_of(&p, &child), "completed");
    let marks = marks(&p);
    assert_eq!(
        marks.iter().filter(|m| *m == "slow-first").count(),
        1,
        "{marks:?}"
    );
    assert_eq!(row(&mut db, &parent), (Some("done".to_owned()), false));
}

#[test]
fn a_live_replay_of_a_submitted_run_starts_its_children_from_the_bundle_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let p = project(&server.database(), "kid");
    p.write_loop(
        "parent",
        &PARENT.replace(
            "initial: call\nstates:\n",
            "initial: before\nstates:\n  before:\n    shell: echo before ${env.FLAVOR?} >> marks\n    next: call\n",
        ),
    );
    let parent = submit(&p, "parent");
    let worker = spawn_worker(&p, "w", &["--exit-when-idle"]);
    let out = p.wait(worker, Duration::from_secs(60));
    assert_eq!(out.code, 0, "{}", stderr_of(p.root(), "w"));
    assert_eq!(status_of(&p, &parent), "completed");

    // The checkout lost the child loop; a live replay that diverges at step 1 (another
    // FLAVOR) runs the `loop:` step for real, from the bundle kept with the source.
    std::fs::remove_file(p.root().join(".loops/kid.yaml")).expect("delete kid");
    let before = marks(&p).len();
    let out = p.dloop_env(&["replay", &parent, "--live"], &[("FLAVOR", "b")]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        marks(&p)[before..],
        ["before b", "kid-first", "grand-bundled", "after"],
        "{:?}",
        marks(&p)
    );
}
