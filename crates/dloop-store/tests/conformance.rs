//! The conformance suite on the file store.

use dloop_store::FileStore;

#[test]
fn file_store_passes_the_conformance_suite() {
    let dirs = std::cell::RefCell::new(Vec::new());
    dloop_store::conformance::run_all(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path().join(".dloop"));
        dirs.borrow_mut().push(tmp);
        store
    });
}
