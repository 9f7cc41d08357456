//! Issue 12: leased workers on a real PostgreSQL server (never a mock). Each test names the
//! server in its name; without PostgreSQL's binaries they skip with a message, except under CI.
//! Workers are real `dloop worker` processes; kill(1) sends SIGKILL, SIGSTOP, SIGCONT, SIGTERM.

use std::time::{Duration, Instant};

use dloop_store_pg::testing::TestServer;

use crate::pg_cluster::{Cluster, steps_loop, wait_for};

/// The lease TTL of these tests, short so failover is quick to measure.
const TTL: Duration = Duration::from_millis(2000);
const TTL_ARG: &str = "2s";

#[test]
fn three_workers_finish_thirty_runs_and_a_killed_workers_runs_move_within_the_ttl_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let steps = 4;
    let mut cluster = Cluster::new(server.database(), &steps_loop(steps, "1"));
    // Slots to spare (the two survivors alone have 40 for 30 runs), so a run whose lease
    // expires is claimed at once: the failover measured is the lease's, not a wait for a slot.
    // The workers start first and share the runs as they are submitted.
    for name in ["w1", "w2", "w3"] {
        cluster.start_worker(name, 20, TTL_ARG);
    }
    let ids = cluster.submit(30);
    // Mid-run: w1 holds runs and some step has finished.
    assert!(
        wait_for(Duration::from_secs(60), || cluster
            .key_lines()
            .keys()
            .any(|(w, _)| w == "done")
            && !cluster.leases_of("w1").is_empty()),
        "w1 never held a run mid-way:\n{}",
        cluster.stderr("w1")
    );
    let victims = cluster.leases_of("w1");
    cluster.signal("w1", "KILL");
    let killed = Instant::now();
    // Each of w1's runs is claimed by another worker (a new token) once its lease expires.
    let mut moved = Duration::ZERO;
    for (id, token) in &victims {
        let taken = wait_for(TTL + Duration::from_secs(5), || {
            cluster
                .db()
                .query_opt(
                    "SELECT 1 FROM runs WHERE id = $1
                       AND (lease_token > $2 OR queue = 'done')",
                    &[id, token],
                )
                .expect("query")
                .is_some()
        });
        assert!(taken, "{id} was never taken over");
        moved = moved.max(killed.elapsed());
    }
    assert!(
        moved <= TTL + Duration::from_secs(1),
        "failover took {moved:?}, more than the lease TTL ({TTL:?}) + 1 s"
    );
    assert!(
        wait_for(Duration::from_secs(120), || cluster.done() == 30),
        "not every run completed: {} done\n{}\n{}",
        cluster.done(),
        cluster.stderr("w2"),
        cluster.stderr("w3")
    );
    let reruns = cluster.check_steps(&ids, steps);
    // Only the steps in flight on w1 when it died ran again (at most one per run it held).
    assert!(
        reruns <= victims.len(),
        "{reruns} step(s) re-ran, w1 held {}",
        victims.len()
    );
    eprintln!("failover after SIGKILL: {moved:?} (TTL {TTL:?}); {reruns} in-flight step(s) re-ran");
}

#[test]
fn a_worker_stopped_past_its_lease_has_its_next_write_refused_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let mut cluster = Cluster::new(server.database(), &steps_loop(2, "3"));
    let ids = cluster.submit(1);
    let id = &ids[0];
    cluster.start_worker("a", 1, "1500ms");
    assert!(
        wait_for(Duration::from_secs(30), || std::fs::read_to_string(
            &cluster.keys
        )
        .unwrap_or_default()
        .contains("start")),
        "worker a never started the action:\n{}",
        cluster.stderr("a")
    );
    cluster.signal("a", "STOP");
    cluster.start_worker("b", 1, "1500ms");
    assert!(
        wait_for(Duration::from_secs(60), || cluster.done() == 1),
        "b never completed the run:\n{}",
        cluster.stderr("b")
    );
    let before = cluster.records(id);
    cluster.signal("a", "CONT");
    assert!(
        wait_for(Duration::from_secs(30), || cluster
            .stderr("a")
            .contains("dropped")),
        "a did not drop the run after it woke:\n{}",
        cluster.stderr("a")
    );
    let stderr = cluster.stderr("a");
    assert!(stderr.contains("lost the claim"), "{stderr}");
    assert_eq!(
        cluster.records(id),
        before,
        "nothing a wrote after waking landed"
    );
    cluster.check_steps(&ids, 2);
    // b re-ran the step a was in (same key), and a's attempt was never recorded as finished.
    let started: Vec<&serde_json::Value> = before
        .iter()
        .filter(|r| r["type"] == "action_started" && r["state"] == "s1")
        .collect();
    assert_eq!(started.len(), 2, "a's attempt and b's re-run");
    assert_eq!(started[0]["idempotency_key"], started[1]["idempotency_key"]);
}

#[test]
fn a_postgres_restart_under_a_running_worker_loses_and_doubles_nothing_needs_postgres() {
    if dloop_store_pg::testing::find_bin().is_none() && std::env::var_os("CI").is_none() {
        eprintln!("skipping: PostgreSQL's initdb/pg_ctl not found");
        return;
    }
    let server = TestServer::start().expect("a server of this test's own");
    let steps = 3;
    let mut cluster = Cluster::new(server.database(), &steps_loop(steps, "0.3"));
    let ids = cluster.submit(6);
    cluster.start_worker("w", 3, "5s");
    assert!(
        wait_for(Duration::from_secs(30), || std::fs::read_to_string(
            &cluster.keys
        )
        .unwrap_or_default()
        .lines()
        .count()
            >= 4),
        "no step ran:\n{}",
        cluster.stderr("w")
    );
    server.stop().expect("stop the server");
    server.restart().expect("start it again");
    assert!(
        wait_for(Duration::from_secs(90), || cluster.done() == 6),
        "not every run completed after the restart:\n{}",
        cluster.stderr("w")
    );
    cluster.check_steps(&ids, steps);
    let stderr = cluster.stderr("w");
    assert!(!stderr.contains("dropped"), "{stderr}");
}

#[test]
fn stop_and_cancel_reach_a_run_on_a_worker_through_the_database_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let mut cluster = Cluster::new(server.database(), &steps_loop(3, "3"));
    let ids = cluster.submit(2);
    let url = cluster.url.clone();
    let store = ["--store", url.as_str()];
    let queued = cluster
        .project
        .dloop(&[&["status", "--json"][..], &store].concat())
        .json();
    let words: Vec<&str> = queued
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["status"].as_str().expect("status"))
        .collect();
    assert_eq!(
        words,
        ["queued", "queued"],
        "submitted runs wait for a worker"
    );
    cluster.start_worker("w", 2, "3s");
    assert!(
        wait_for(Duration::from_secs(30), || cluster.leases_of("w").len()
            == 2),
        "{}",
        cluster.stderr("w")
    );
    let stop = cluster
        .project
        .dloop(&[&["stop", &ids[0]][..], &store].concat());
    assert_eq!(stop.code, 0, "{}", stop.render());
    assert!(stop.stderr.contains("asked run"), "{}", stop.render());
    let paused = wait_for(Duration::from_secs(30), || {
        let out = cluster
            .project
            .dloop(&[&["inspect", &ids[0], "--json"][..], &store].concat());
        out.code == 0 && out.json()["status"] == "paused"
    });
    assert!(paused, "{}", cluster.stderr("w"));
    let cancel = cluster
        .project
        .dloop(&[&["cancel", &ids[1]][..], &store].concat());
    assert_eq!(cancel.code, 0, "{}", cancel.render());
    let status = cluster
        .project
        .dloop(&[&["status", "--all", "--json"][..], &store].concat());
    let statuses: Vec<(String, String)> = status
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_owned(),
                r["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect();
    let mut expected = vec![
        (ids[0].clone(), "paused".to_owned()),
        (ids[1].clone(), "cancelled".to_owned()),
    ];
    expected.sort();
    let mut statuses = statuses;
    statuses.sort();
    assert_eq!(statuses, expected);
    // The worker let go of both: neither is claimed again.
    assert!(cluster.leases_of("w").is_empty());
    // `submit --resume` hands the stopped run back; the worker finishes it.
    let back = cluster
        .project
        .dloop(&[&["submit", "--resume", &ids[0]][..], &store].concat());
    assert_eq!(back.code, 0, "{}", back.render());
    assert!(
        wait_for(Duration::from_secs(60), || cluster.done() == 1),
        "{}",
        cluster.stderr("w")
    );
    let records = cluster.records(&ids[0]);
    assert_eq!(records.last().expect("records")["type"], "run_completed");
}

#[test]
fn a_worker_given_sigterm_hands_its_runs_over_at_once_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let mut cluster = Cluster::new(server.database(), &steps_loop(2, "2"));
    let ids = cluster.submit(2);
    // A lease far longer than the test: only the release on SIGTERM lets the heir in.
    cluster.start_worker("leaving", 2, "60s");
    // Both actions running (the first step of each run has started).
    assert!(
        wait_for(Duration::from_secs(30), || {
            let starts = cluster
                .key_lines()
                .keys()
                .filter(|(w, _)| w == "start")
                .count();
            cluster.leases_of("leaving").len() == 2 && starts == 2
        }),
        "{}",
        cluster.stderr("leaving")
    );
    cluster.start_worker("heir", 2, "60s");
    cluster.signal("leaving", "TERM");
    let asked = Instant::now();
    assert!(
        wait_for(Duration::from_secs(20), || cluster.leases_of("heir").len()
            == 2
            || cluster.done() == 2),
        "the heir never got the runs:\n{}\n{}",
        cluster.stderr("leaving"),
        cluster.stderr("heir")
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        wait_for(Duration::from_secs(60), || cluster.done() == 2),
        "{}",
        cluster.stderr("heir")
    );
    assert!(
        cluster.stderr("leaving").contains("stopped"),
        "{}",
        cluster.stderr("leaving")
    );
    // The interrupted steps were recorded as such and re-run with their keys, once each.
    cluster.check_steps(&ids, 2);
    for id in &ids {
        assert!(
            cluster
                .records(id)
                .iter()
                .any(|r| r["type"] == "action_interrupted"),
            "{id}: the leaving worker recorded its interrupted action"
        );
    }
}
