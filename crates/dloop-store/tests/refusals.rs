//! Issue 7: what the store refuses rather than guesses at, each test named for what it guards.
//! The CLI-level twins (the real binary) are in dloop-cli's tests/cli/refusals.rs.

use std::os::unix::fs::symlink;

use dloop_core::Timestamp;
use dloop_store::conformance::batch;
use dloop_store::{RunHandle, Store, StoreError};

use crate::common::{events, fold, read_all, run_with, store};
use crate::corruption::line_start;

fn snapshot_at_end(store: &dloop_store::FileStore, id: &str) {
    let mut run = store.open_run(id).expect("open");
    let (state, _) = run.load_state().expect("load");
    run.save_snapshot(&state).expect("snapshot");
}

/// F2: every line ending in `\r` (a log through a CRLF conversion) is not a torn tail.
#[test]
fn log_with_every_line_ending_in_cr_is_refused() {
    let (_tmp, store) = store();
    run_with(&store, "r", &[2, 3]);
    let path = events(&store, "r");
    let crlf = std::fs::read_to_string(&path)
        .expect("read")
        .replace('\n', "\r\n");
    std::fs::write(&path, &crlf).expect("write");
    let mut run = store.open_run("r").expect("open");
    let err = run.load_state().expect_err("refused");
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                line: 1,
                offset: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), crlf);
}

/// F2: a log whose every checksum was altered has no valid record; nothing is cut.
#[test]
fn log_with_every_crc_altered_is_refused() {
    let (_tmp, store) = store();
    run_with(&store, "r", &[1]);
    let path = events(&store, "r");
    let text = std::fs::read_to_string(&path).expect("read");
    let altered = text.replace(r#","crc":""#, r#","crc":"f"#);
    let altered = altered.replace("\"}\n", "}\n");
    std::fs::write(&path, &altered).expect("write");
    let mut run = store.open_run("r").expect("open");
    let err = run.load_state().expect_err("refused");
    assert!(matches!(err, StoreError::NoValidRecord { .. }), "{err:?}");
    assert!(err.to_string().contains("line 1"), "{err}");
    assert!(matches!(
        store.load_state("r"),
        Err(StoreError::NoValidRecord { .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), altered);
}

/// F2: a foreign file in place of the log (one line or many, with or without a last newline)
/// is never "repaired" to empty.
#[test]
fn foreign_file_in_place_of_the_log_is_refused() {
    for foreign in [
        &b"#!/bin/sh\necho hi\n"[..],
        b"PNG\x00\x01binary",
        b"hello\n",
    ] {
        let (_tmp, store) = store();
        run_with(&store, "r", &[]);
        let path = events(&store, "r");
        std::fs::write(&path, foreign).expect("write");
        let mut run = store.open_run("r").expect("open");
        let err = run.load_state().expect_err("refused");
        assert!(
            matches!(
                err,
                StoreError::NoValidRecord { .. } | StoreError::Corrupt { line: 1, .. }
            ),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&path).expect("read"), foreign);
    }
}

/// A crash tears at most the last line: a bad line with anything after it is refused, even
/// when what follows is not valid either.
#[test]
fn damage_followed_by_more_lines_is_refused() {
    let (_tmp, store) = store();
    let written = run_with(&store, "r", &[2, 1]);
    let path = events(&store, "r");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(b"{\"x\n\xffgarbage");
    std::fs::write(&path, &bytes).expect("write");
    let mut run = store.open_run("r").expect("open");
    let err = run.load_state().expect_err("refused");
    assert!(
        matches!(err, StoreError::Corrupt { line: 4, .. }),
        "{err:?}"
    );
    drop(run);
    let readers: Vec<_> = store.records_from("r", 1).expect("reader").collect();
    assert_eq!(readers.len(), written.len() + 1);
    assert!(matches!(
        readers.last(),
        Some(Err(StoreError::Corrupt { line: 4, .. }))
    ));
}

/// F1: the snapshot's last record is durable, so damage to it is not a crash's torn tail; it is
/// caught (by reading that one line) before anything is appended after it.
#[test]
fn damaged_last_line_under_the_snapshot_is_caught_before_appending() {
    let (_tmp, store) = store();
    run_with(&store, "r", &[2, 2]);
    snapshot_at_end(&store, "r");
    let path = events(&store, "r");
    let mut bytes = std::fs::read(&path).expect("read");
    let last = line_start(&bytes, 4);
    bytes[last + 12] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");

    let mut run = store.open_run("r").expect("open");
    let err = run.load_state().expect_err("refused");
    assert!(
        matches!(err, StoreError::Corrupt { line: 4, .. }),
        "{err:?}"
    );
    assert!(matches!(
        run.append(&batch(1, "x"), Timestamp::from_millis(9)),
        Err(StoreError::NotLoaded { .. })
    ));
    drop(run);
    assert!(matches!(
        store.load_state("r"),
        Err(StoreError::Corrupt { line: 4, .. })
    ));
    assert_eq!(
        std::fs::read(&path).expect("read"),
        bytes,
        "nothing appended"
    );
}

/// F5: a parseable, hand-edited `state.json` fails its checksum and is rebuilt from the log.
#[test]
fn edited_snapshot_is_rebuilt_from_the_log_never_believed() {
    let (_tmp, store) = store();
    let written = run_with(&store, "r", &[2, 2]);
    snapshot_at_end(&store, "r");
    let snap = store.local_run_dir("r").expect("dir").join("state.json");
    let text = std::fs::read_to_string(&snap).expect("read");
    let forged = text.replace(r#""step":1"#, r#""step":7"#);
    assert_ne!(forged, text, "the forgery changed something");
    std::fs::write(&snap, &forged).expect("write");
    let (state, info) = store.load_state("r").expect("read-only load");
    assert_eq!(state, fold(&written));
    assert!(
        info.snapshot_ignored
            .as_deref()
            .is_some_and(|why| why.contains("checksum")),
        "{info:?}"
    );
    let mut run = store.open_run("r").expect("open");
    let (state, info) = run.load_state().expect("load");
    assert_eq!((state, info.snapshot_seq), (fold(&written), None));
}

/// F5: `run.json` whose definition was edited no longer matches its hash: refused, named.
#[test]
fn edited_run_json_definition_is_refused() {
    let (_tmp, store) = store();
    run_with(&store, "r", &[1]);
    let meta = store.local_run_dir("r").expect("dir").join("run.json");
    let text = std::fs::read_to_string(&meta).expect("read");
    std::fs::write(&meta, text.replace("initial: a", "initial: b")).expect("write");
    let err = store.read_meta("r").expect_err("refused");
    assert!(matches!(err, StoreError::TamperedMeta { .. }), "{err:?}");
    assert!(err.to_string().contains("run.json"), "{err}");
}

/// F3: no run file is opened through a link: the log, the snapshot, run.json, the lock and the
/// run folder itself. The link's target stays byte-identical.
#[test]
fn symlinked_run_files_are_refused_and_targets_untouched() {
    for name in ["events.jsonl", "state.json", "run.json", "lock"] {
        let (tmp, store) = store();
        run_with(&store, "r", &[2, 1]);
        snapshot_at_end(&store, "r");
        let target = tmp.path().join("precious.txt");
        std::fs::write(&target, b"do not touch\n").expect("write");
        let file = store.local_run_dir("r").expect("dir").join(name);
        std::fs::remove_file(&file).expect("rm");
        symlink(&target, &file).expect("symlink");
        let mut outcome = Vec::new();
        match store.open_run("r") {
            Ok(mut run) => {
                outcome.push(run.load_state().map(|_| ()));
                outcome.push(
                    run.append(&batch(1, "x"), Timestamp::from_millis(1))
                        .map(|_| ()),
                );
            }
            Err(e) => outcome.push(Err(e)),
        }
        outcome.push(store.load_state("r").map(|_| ()));
        outcome.push(store.read_meta("r").map(|_| ()));
        assert!(
            outcome
                .iter()
                .any(|r| matches!(r, Err(StoreError::UnsafePath { .. }))),
            "{name}: {outcome:?}"
        );
        assert_eq!(
            std::fs::read(&target).expect("read"),
            b"do not touch\n",
            "{name}"
        );
    }
    // The output stream: neither appended to nor read through a link.
    {
        let (tmp, store) = self::store();
        run_with(&store, "r", &[1]);
        let target = tmp.path().join("precious.txt");
        std::fs::write(&target, b"do not touch\n").expect("write");
        let stream = store.local_run_dir("r").expect("dir").join("output.log");
        symlink(&target, &stream).expect("symlink");
        let mut run = store.open_run("r").expect("open");
        run.load_state().expect("loads");
        let err = run.open_output().expect_err("refused");
        assert!(matches!(err, StoreError::UnsafePath { .. }), "{err:?}");
        let err = store.read_output("r", 0, None).expect_err("refused");
        assert!(matches!(err, StoreError::UnsafePath { .. }), "{err:?}");
        assert_eq!(std::fs::read(&target).expect("read"), b"do not touch\n");
    }
    // The run folder itself.
    let (tmp, store) = store();
    run_with(&store, "elsewhere", &[1]);
    let runs = tmp.path().join(".dloop/runs");
    symlink(runs.join("elsewhere"), runs.join("r")).expect("symlink");
    let err = store.open_run("r").expect_err("refused");
    assert!(matches!(err, StoreError::UnsafePath { .. }), "{err:?}");
    assert!(err.to_string().contains("runs/r"), "{err}");
}

/// F6: a reader names damage in the first line as line 1 at byte 0, as the writer does.
#[test]
fn reader_names_damage_in_the_first_line_as_line_1() {
    let (_tmp, store) = store();
    run_with(&store, "r", &[1, 1]);
    let path = events(&store, "r");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[5] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    let first = store.records_from("r", 1).expect("reader").next();
    assert!(
        matches!(
            first,
            Some(Err(StoreError::Corrupt {
                line: 1,
                offset: 0,
                ..
            }))
        ),
        "{first:?}"
    );
    let mut run = store.open_run("r").expect("open");
    assert!(matches!(
        run.load_state(),
        Err(StoreError::Corrupt {
            line: 1,
            offset: 0,
            ..
        })
    ));
}

/// F7: a husk left by an older dloop (a folder with an empty lock, no log, no run.json) is not
/// a run: listed apart, never an error, removable; a run whose run.json is gone is still found.
#[test]
fn husk_is_incomplete_and_run_without_run_json_is_found() {
    let (tmp, store) = store();
    let written = run_with(&store, "kept-20261121T103207-a1b2", &[2]);
    let runs = tmp.path().join(".dloop/runs");
    let husk = runs.join("husk-20261121T103208-c3d4");
    std::fs::create_dir(&husk).expect("mkdir");
    std::fs::write(husk.join("lock"), b"").expect("lock");
    std::fs::remove_file(runs.join("kept-20261121T103207-a1b2/run.json")).expect("rm");

    assert_eq!(store.run_ids().expect("ids"), ["kept-20261121T103207-a1b2"]);
    let list = store.list_runs().expect("list");
    assert_eq!(list.runs.len(), 1);
    assert!(list.unreadable.is_empty(), "{:?}", list.unreadable);
    assert_eq!(list.incomplete[0].name, "husk-20261121T103208-c3d4");
    assert_eq!(read_all(&store, "kept-20261121T103207-a1b2"), written);
    assert!(matches!(
        store.read_meta("kept-20261121T103207-a1b2"),
        Err(StoreError::MetaMissing { .. })
    ));
    assert!(matches!(
        store.open_run("husk-20261121T103208-c3d4"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .remove_incomplete("husk-20261121T103208-c3d4")
            .expect("remove")
    );
    assert!(!husk.exists());
}
