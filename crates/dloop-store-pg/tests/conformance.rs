//! The store conformance suite on PgStore: the same checks the file store passes.

use std::cell::RefCell;

use dloop_store::Store;
use dloop_store::conformance::{Harness, run_all};
use dloop_store_pg::PgStore;
use dloop_store_pg::testing::TestServer;

/// Makes PgStores, each on a fresh database; the hooks act on the newest one.
struct Databases<'a> {
    server: &'a TestServer,
    urls: RefCell<Vec<String>>,
}

impl Databases<'_> {
    fn admin(&self) -> postgres::Client {
        let url = self.urls.borrow().last().expect("a store was made").clone();
        postgres::Client::connect(&url, postgres::NoTls).expect("connect")
    }
}

impl Harness for Databases<'_> {
    fn store(&self) -> Box<dyn Store> {
        let url = self.server.database();
        self.urls.borrow_mut().push(url.clone());
        Box::new(PgStore::connect(&url).expect("connect"))
    }

    fn steal_claim(&self, _store: &dyn Store, id: &str) {
        // What a worker's claim does after the holder's lease expired: a new token.
        let n = self
            .admin()
            .execute(
                "UPDATE runs SET lease_token = lease_token + 1, lease_owner = 'thief',
                     lease_expires_at = clock_timestamp() + interval '1 minute'
                 WHERE id = $1",
                &[&id],
            )
            .expect("steal");
        assert_eq!(n, 1);
    }

    fn leave_incomplete(&self, store: &dyn Store, id: &str) -> String {
        // A creation is one transaction and cannot be cut short; what a crash can leave is a
        // deletion that marked the run and died before removing it.
        drop(
            store
                .create_run(&dloop_store::conformance::meta(id))
                .expect("create"),
        );
        let n = self
            .admin()
            .execute("UPDATE runs SET deleting = true WHERE id = $1", &[&id])
            .expect("mark");
        assert_eq!(n, 1);
        format!(".deleting-{id}")
    }
}

#[test]
fn pg_store_passes_the_conformance_suite_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    run_all(&Databases {
        server,
        urls: RefCell::new(Vec::new()),
    });
}
