//! `--help` text, snapshotted so a changed doc comment shows in review.

use crate::common::TestProject;

#[test]
fn top_level_help() {
    let out = TestProject::new().dloop(&["--help"]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 0);
}

#[test]
fn command_help() {
    let p = TestProject::new();
    for cmd in ["init", "validate", "list", "show", "schema", "completions"] {
        let out = p.dloop(&[cmd, "--help"]);
        assert_eq!(out.code, 0, "{}", out.render());
        insta::assert_snapshot!(format!("help_{cmd}"), out.render());
    }
}

#[test]
fn bad_usage_exits_2() {
    let out = TestProject::new().dloop(&["show"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.starts_with("error:"), "{}", out.render());
}
