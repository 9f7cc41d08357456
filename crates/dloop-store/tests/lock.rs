//! The run lock under contention: threads and another process.

use std::sync::{Arc, Barrier};

use dloop_store::conformance::meta;
use dloop_store::{FileStore, RunHandle, Store, StoreError};

use crate::common::store;

#[test]
fn racing_create_run_with_the_same_id_has_one_winner() {
    let (_tmp, store) = store();
    for round in 0..5 {
        let id = format!("race-{round}");
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (store, barrier, id) = (store.clone(), barrier.clone(), id.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let result = store.create_run(&meta(&id));
                    // Hold the winner until everyone tried.
                    barrier.wait();
                    result.map(drop)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}"
        );
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(()) | Err(StoreError::AlreadyExists { .. })))
        );
    }
}

#[test]
fn racing_open_run_has_one_winner() {
    let (_tmp, store) = store();
    drop(store.create_run(&meta("r")).expect("create"));
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let result = store.open_run("r");
                barrier.wait();
                result.map(drop)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(StoreError::AlreadyLive { .. })))
    );
}

/// Readers probing liveness never make a writer see "already live".
#[test]
fn liveness_probes_do_not_block_writers() {
    let (_tmp, store) = store();
    drop(store.create_run(&meta("r")).expect("create"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = store.is_live("r");
                }
            })
        })
        .collect();
    for i in 0..100 {
        let run = store
            .open_run("r")
            .unwrap_or_else(|e| panic!("open {i}: {e}"));
        drop(run);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in probers {
        p.join().expect("prober");
    }
}

/// Helper process for [`lock_held_by_another_process`]: holds the run lock until killed.
#[test]
#[ignore = "a helper process, not a test: its parent runs it with --ignored"]
fn child_hold_lock() {
    let (Ok(root), Ok("hold")) = (
        std::env::var("DLOOP_STORE_ROOT"),
        std::env::var("DLOOP_STORE_CHILD").as_deref(),
    ) else {
        return;
    };
    let store = FileStore::new(root);
    let _run = store.open_run("r").expect("child opens");
    println!("LOCKED");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn lock_held_by_another_process() {
    use std::io::BufRead;
    let (tmp, store) = store();
    drop(store.create_run(&meta("r")).expect("create"));
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "lock::child_hold_lock",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DLOOP_STORE_CHILD", "hold")
        .env("DLOOP_STORE_ROOT", tmp.path().join(".dloop"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let locked = std::io::BufReader::new(stdout)
        .lines()
        .any(|l| l.is_ok_and(|l| l.contains("LOCKED")));
    assert!(locked, "child never took the lock");
    assert!(store.is_live("r").expect("is_live"));
    match store.open_run("r") {
        Err(StoreError::AlreadyLive { pid, .. }) => assert_eq!(pid, Some(child.id())),
        other => panic!("expected AlreadyLive, got {other:?}"),
    }
    assert_eq!(
        store.holder("r").expect("id").map(|i| i.pid),
        Some(child.id())
    );
    child.kill().expect("kill");
    child.wait().expect("wait");
    // The kernel released the flock with the process.
    assert!(!store.is_live("r").expect("is_live"));
    let mut run = store.open_run("r").expect("open after the holder died");
    run.load_state().expect("load");
}
