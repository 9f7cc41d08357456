//! The conformance suite on the file store.

use std::cell::RefCell;
use std::path::PathBuf;

use dloop_store::conformance::{Harness, run_all};
use dloop_store::{FileStore, Store};

/// Makes file stores in temp folders; the hooks act on the newest one (each check takes a
/// fresh store and uses it before asking for another).
#[derive(Default)]
struct Files {
    dirs: RefCell<Vec<tempfile::TempDir>>,
}

impl Files {
    fn runs(&self) -> PathBuf {
        let dirs = self.dirs.borrow();
        dirs.last()
            .expect("a store was made")
            .path()
            .join(".dloop/runs")
    }
}

impl Harness for Files {
    fn store(&self) -> Box<dyn Store> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path().join(".dloop"));
        self.dirs.borrow_mut().push(tmp);
        Box::new(store)
    }

    fn steal_claim(&self, _store: &dyn Store, id: &str) {
        // What a user's `rm lock` and a second `dloop resume` do: a new file under the name.
        let lock = self.runs().join(id).join("lock");
        std::fs::remove_file(&lock).expect("remove the lock file");
        std::fs::write(&lock, b"").expect("a new lock file");
    }

    fn leave_incomplete(&self, _store: &dyn Store, id: &str) -> String {
        // A creation killed before its rename: a temp folder with a lock nobody holds.
        let name = format!(".creating-{id}-4242-0");
        let dir = self.runs().join(&name);
        std::fs::create_dir_all(dir.join("work")).expect("mkdir");
        std::fs::write(dir.join("lock"), b"").expect("lock");
        name
    }
}

#[test]
fn file_store_passes_the_conformance_suite() {
    run_all(&Files::default());
}
