//! Leases, fencing and the schema's versions, against a real server.

use dloop_core::Timestamp;
use dloop_store::conformance::{batch, meta};
use dloop_store::{Store, StoreError};
use dloop_store_pg::queue::{self, Settled};
use dloop_store_pg::testing::TestServer;
use dloop_store_pg::{Holder, PgStore, schema};

fn admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connect")
}

#[test]
fn every_write_after_the_lease_expired_is_refused_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let url = server.database();
    let store = PgStore::connect(&url).expect("connect");
    let mut run = store.create_run(&meta("f-1")).expect("create");
    let written = run
        .append(&batch(2, "a"), Timestamp::from_millis(1))
        .expect("append");
    let mut output = run.open_output().expect("output");
    output.append(b"before").expect("output append");
    // What a stall past the TTL looks like from the database: the deadline has passed and
    // nobody renewed it.
    admin(&url)
        .execute(
            "UPDATE runs SET lease_expires_at = clock_timestamp() - interval '1 second'
             WHERE id = 'f-1'",
            &[],
        )
        .expect("expire");
    assert!(matches!(
        run.check_claim(),
        Err(StoreError::ClaimLost { .. })
    ));
    assert!(matches!(
        run.append(&batch(1, "late"), Timestamp::from_millis(2)),
        Err(StoreError::ClaimLost { .. })
    ));
    assert!(matches!(
        output.append(b"late"),
        Err(StoreError::ClaimLost { .. })
    ));
    assert!(matches!(output.sync(), Err(StoreError::ClaimLost { .. })));
    let state = dloop_store::conformance::fold(&written);
    assert!(matches!(
        run.save_snapshot(&state),
        Err(StoreError::ClaimLost { .. })
    ));
    drop(output);
    drop(run);
    let records: Vec<_> = store
        .records_from("f-1", 1)
        .expect("records")
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(records, written, "nothing late landed");
    assert_eq!(
        store.read_output("f-1", 0, None).expect("output").0,
        b"before".to_vec()
    );
    // Expired is free: another holder opens it (a new token) and writes.
    let mut again = store.open_run("f-1").expect("reopen after expiry");
    again.load_state().expect("load");
    again
        .append(&batch(1, "b"), Timestamp::from_millis(3))
        .expect("append");
}

#[test]
fn the_claim_takes_runnable_runs_once_each_and_bumps_the_token_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let url = server.database();
    let store = PgStore::connect(&url).expect("connect");
    for id in ["q-1", "q-2", "q-3"] {
        queue::submit(&store, &meta(id)).expect("submit");
    }
    let worker = Holder::this_process("worker");
    let first = queue::claim(&store, 2, &worker).expect("claim");
    assert_eq!(
        first.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["q-1", "q-2"]
    );
    assert!(first.iter().all(|c| c.token == 2), "{first:?}");
    let second = queue::claim(&store, 5, &worker).expect("claim");
    assert_eq!(
        second.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["q-3"]
    );
    assert!(
        queue::claim(&store, 5, &worker).expect("claim").is_empty(),
        "leased runs are not runnable"
    );
    // The holder of q-1 goes quiet past its deadline: the next claim takes it, token 3.
    admin(&url)
        .execute(
            "UPDATE runs SET lease_expires_at = clock_timestamp() - interval '1 second'
             WHERE id = 'q-1'",
            &[],
        )
        .expect("expire");
    let rescued = queue::claim(&store, 5, &worker).expect("claim");
    assert_eq!(rescued.len(), 1);
    assert_eq!((rescued[0].id.as_str(), rescued[0].token), ("q-1", 3));
    // The stale holder's settle changes nothing; the new holder's lands and frees the run.
    assert!(!queue::settle(&store, "q-1", 2, Settled::Done).expect("settle"));
    assert!(queue::settle(&store, "q-1", 3, Settled::Held).expect("settle"));
    assert!(!store.is_live("q-1").expect("is_live"));
    assert!(
        queue::claim(&store, 5, &worker).expect("claim").is_empty(),
        "a held run waits for a person"
    );
    assert!(queue::requeue(&store, "q-1").expect("requeue"));
    assert_eq!(queue::claim(&store, 5, &worker).expect("claim")[0].token, 4);
}

#[test]
fn a_database_behind_or_newer_than_the_binary_is_refused_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let url = server.database();
    let mut client = admin(&url);
    assert_eq!(
        schema::version(&mut client).expect("version"),
        schema::LATEST
    );
    client
        .execute(
            "UPDATE dloop_schema SET version = $1",
            &[&(schema::LATEST + 1)],
        )
        .expect("pretend a newer dloop migrated it");
    let err = PgStore::connect(&url).expect_err("newer is refused");
    assert!(err.to_string().contains("newer"), "{err}");
    let err = PgStore::migrate(&url).expect_err("never migrated backwards");
    assert!(err.to_string().contains("newer"), "{err}");

    // A database dloop never migrated: refused with the command that fixes it.
    let mut root = admin(&server.url("postgres"));
    root.batch_execute("CREATE DATABASE never_migrated")
        .expect("create");
    let bare = server.url("never_migrated");
    let err = PgStore::connect(&bare).expect_err("not migrated");
    assert!(err.to_string().contains("dloop db migrate"), "{err}");
    let done = PgStore::migrate(&bare).expect("migrate");
    assert_eq!((done.from, done.to), (0, schema::LATEST));
    assert_eq!(
        PgStore::migrate(&bare).expect("again").from,
        schema::LATEST,
        "a second migration does nothing"
    );
    PgStore::connect(&bare).expect("now usable");
}
