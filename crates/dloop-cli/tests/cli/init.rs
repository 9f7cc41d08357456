//! `dloop init`.

use crate::common::TestProject;

#[test]
fn init_creates_a_valid_project() {
    let p = TestProject::new();
    let out = p.dloop(&["init"]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 0);
    assert!(p.root().join(".loops/check-fix.yaml").is_file());
    assert!(p.read(".loops/config.yaml").contains("runners:"));
    assert_eq!(p.read(".gitignore"), ".loops/.dloop/\n");
    let validate = p.dloop(&["validate"]);
    assert_eq!(validate.code, 0, "{}", validate.render());
}

#[test]
fn init_refuses_to_overwrite_the_example() {
    let p = TestProject::new();
    assert_eq!(p.dloop(&["init"]).code, 0);
    p.write_loop("check-fix", "# mine\n");
    let out = p.dloop(&["init"]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 2);
    assert_eq!(p.read(".loops/check-fix.yaml"), "# mine\n");
}

#[test]
fn init_adds_the_gitignore_line_once() {
    let p = TestProject::new();
    p.write(".gitignore", "target/");
    assert_eq!(p.dloop(&["init"]).code, 0);
    std::fs::remove_file(p.root().join(".loops/check-fix.yaml")).expect("rm");
    assert_eq!(p.dloop(&["init"]).code, 0);
    assert_eq!(p.read(".gitignore"), "target/\n.loops/.dloop/\n");
}

#[test]
fn init_keeps_an_existing_config() {
    let p = TestProject::new();
    p.write(".loops/config.yaml", "runners: {}\n");
    let out = p.dloop(&["init"]);
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("kept .loops/config.yaml"),
        "{}",
        out.render()
    );
    assert_eq!(p.read(".loops/config.yaml"), "runners: {}\n");
}

#[test]
fn init_from_a_subfolder_uses_the_project_root() {
    let p = TestProject::new();
    let sub = p.root().join("src/deep");
    std::fs::create_dir_all(&sub).expect("mkdir");
    assert_eq!(p.dloop_in(&sub, &["init"]).code, 0);
    assert!(p.root().join(".loops/check-fix.yaml").is_file());
    assert!(!sub.join(".loops").exists());
}

#[test]
fn init_outside_a_repository_is_refused_without_here() {
    let p = TestProject::new();
    std::fs::remove_dir(p.root().join(".git")).expect("rm .git");
    let out = p.dloop(&["init"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("is in no git repository"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("`dloop init --here`"), "{}", out.stderr);
    assert!(!p.root().join(".loops").exists(), "nothing was written");
    assert_eq!(p.dloop(&["init", "--here"]).code, 0);
    assert!(p.root().join(".loops/check-fix.yaml").is_file());
}
