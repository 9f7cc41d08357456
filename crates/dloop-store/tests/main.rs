//! dloop-store's integration tests, one binary with one `mod` per area.

mod common;
mod compat;
mod conformance;
mod corruption;
mod crash;
mod faults;
mod lock;
mod log_bytes;
mod measure;
mod refusals;
mod torn_tail;

/// Every file in tests/ is a module of this binary (a forgotten file would silently not run).
#[test]
fn no_test_file_is_left_out() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).expect("main.rs");
    for entry in std::fs::read_dir(&dir).expect("tests/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(module) = name.strip_suffix(".rs").filter(|m| *m != "main") {
            assert!(
                main.contains(&format!("mod {module};")),
                "tests/{name} is not a module"
            );
        }
    }
}
