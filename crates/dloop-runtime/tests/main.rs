//! Runtime integration tests: real processes, real files. One test binary; one module per area.

mod agent_runners;
mod agent_streams;
mod agents;
mod clock;
mod common;
mod drive;
mod judge;
mod parallel_state;
mod process;
mod stream_props;
mod subloop;

/// Every file in tests/ is compiled: a file without a `mod` line here would be silently skipped.
#[test]
fn no_test_file_is_left_out() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).expect("main.rs");
    for entry in std::fs::read_dir(&dir).expect("tests/") {
        let path = entry.expect("entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "main" {
            assert!(
                main.contains(&format!("mod {stem};")),
                "tests/{stem}.rs has no `mod {stem};`"
            );
        }
    }
}
