//! `dloop completions SHELL`.

use crate::common::TestProject;

#[test]
fn every_shell_gets_a_script() {
    let p = TestProject::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = p.dloop(&["completions", shell]);
        assert_eq!(out.code, 0, "{}", out.render());
        assert!(out.stdout.contains("dloop"), "{shell}");
        assert!(out.stdout.contains("validate"), "{shell}: no subcommands");
    }
    assert_eq!(p.dloop(&["completions", "tcsh"]).code, 2);
}
