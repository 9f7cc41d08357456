//! The LOOP argument: names stay inside `.loops/`, paths must be existing .yaml/.yml files.

use crate::common::TestProject;

#[test]
fn traversal_name_is_refused() {
    let p = TestProject::new();
    p.write_loop("ok", "initial: a\nstates:\n  a:\n    terminal: success\n");
    for cmd in ["show", "validate"] {
        let out = p.dloop(&[cmd, "../../etc/passwd"]);
        assert_eq!(out.code, 2, "{}", out.render());
        assert!(
            out.stderr
                .starts_with("error: `../../etc/passwd` is not a loop name: "),
            "{}",
            out.render()
        );
        assert!(out.stdout.is_empty());
    }
    insta::assert_snapshot!(p.dloop(&["show", "../../etc/passwd"]).render());
}

#[test]
fn unknown_name_lists_known_loops() {
    let p = TestProject::new();
    p.write_loop("ok", "initial: a\nstates:\n  a:\n    terminal: success\n");
    let out = p.dloop(&["show", "nope"]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 2);
}

#[test]
fn a_path_works_from_a_subfolder_and_a_name_from_anywhere_in_the_project() {
    let p = TestProject::new();
    p.write_loop("ok", "initial: a\nstates:\n  a:\n    terminal: success\n");
    let sub = p.root().join("src");
    std::fs::create_dir_all(&sub).expect("mkdir");
    assert_eq!(p.dloop_in(&sub, &["show", "ok"]).code, 0);
    assert_eq!(p.dloop_in(&sub, &["show", "../.loops/ok.yaml"]).code, 0);
}

#[test]
fn config_is_not_a_loop() {
    let p = TestProject::new();
    p.write(".loops/config.yaml", "runners: {}\n");
    let out = p.dloop(&["show", "config"]);
    assert_eq!(out.code, 2, "{}", out.render());
}
