//! Integration tests of the `dloop` binary: one module per command, all in one test binary.

mod actions;
mod agent_failures;
mod agent_runs;
mod agents;
mod common;

mod background;
mod completions;
mod compose;
mod crash;
mod fake_agents;
mod fork;
mod gc;
mod gitrepo;
mod habits;
mod help;
mod history;
mod import;
mod init;
mod inspect;
mod lifecycle;
mod list;
mod logs;
mod names;
mod parallel;
mod pg_cluster;
mod pg_commands;
mod pg_subloops;
mod quoting;
mod refusals;
mod replay;
mod replay_edges;
mod replay_resume;
mod replay_scratch;
mod replay_subloops;
mod resume;
mod run;
mod run_edges;
mod schema;
mod scopes;
mod serve;
mod serve_client;
mod serve_edges;
mod serve_index;
mod show;
mod soak;
mod status;
mod store_door;
mod subloop_edges;
mod subloop_lifecycle;
mod subloops;
mod templates;
mod validate;
mod watch;
mod workers;
mod worktrees;

/// Every `.rs` file in this folder is a module above, so no test file is silently skipped.
#[test]
fn every_test_file_is_included() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli");
    let main = std::fs::read_to_string(dir.join("main.rs")).expect("read main.rs");
    for entry in std::fs::read_dir(&dir).expect("read tests/cli") {
        let path = entry.expect("entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "main" {
            assert!(
                main.contains(&format!("mod {stem};")),
                "tests/cli/{stem}.rs is not a `mod` in main.rs"
            );
        }
    }
}
