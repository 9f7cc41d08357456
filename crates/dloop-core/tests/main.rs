//! dloop-core's integration tests: one binary, one module per area (in `tests/main/`).

#[path = "main/model_based.rs"]
mod model_based;
#[path = "main/parse_errors.rs"]
mod parse_errors;
#[path = "main/props.rs"]
mod props;
#[path = "main/render.rs"]
mod render;
#[path = "main/subloop_fold.rs"]
mod subloop_fold;
#[path = "main/validate_errors.rs"]
mod validate_errors;

use dloop_core::diagnostic::Diagnostic;
use dloop_core::validate::check_loop;

/// Every problem of `source` as `line:col message`, in the order reported.
pub fn problems(source: &str) -> Vec<String> {
    check_loop(source.as_bytes())
        .1
        .iter()
        .map(located)
        .collect()
}

/// `line:col message` (or just the message when there is no span).
pub fn located(d: &Diagnostic) -> String {
    match d.span {
        Some(s) => format!("{}:{} {}", s.line, s.column, d.message),
        None => d.message.clone(),
    }
}

/// The single problem of `source`, with its help.
pub fn only(source: &str) -> (String, Option<String>) {
    let (_, diags) = check_loop(source.as_bytes());
    assert_eq!(diags.len(), 1, "expected one problem, got {diags:#?}");
    (located(&diags[0]), diags[0].help.clone())
}

#[test]
fn every_test_file_is_a_module_of_main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).expect("read main.rs");
    for entry in std::fs::read_dir(dir.join("main")).expect("read tests/main/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 name");
            assert!(
                main.contains(&format!("mod {stem};")),
                "tests/main/{stem}.rs is left out"
            );
        }
    }
    // Cargo builds each tests/*.rs as its own binary: areas belong in tests/main/.
    for entry in std::fs::read_dir(&dir).expect("read tests/") {
        let path = entry.expect("dir entry").path();
        let stray = path.extension().is_some_and(|e| e == "rs") && !path.ends_with("main.rs");
        assert!(!stray, "{} belongs in tests/main/", path.display());
    }
}
