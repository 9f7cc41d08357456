//! `dloop list`.

use crate::common::TestProject;

fn project() -> TestProject {
    let p = TestProject::new();
    p.write_loop("zeta", "description: Last one.\ninitial: a\nstates:\n  a:\n    shell: 'true'\n    next: b\n  b:\n    terminal: success\n");
    p.write_loop(
        "alpha",
        "description: First one.\ninitial: a\nstates:\n  a:\n    terminal: success\n",
    );
    p.write_loop("broken", "initial: a\nstates: [\n");
    p.write(".loops/config.yaml", "runners: {}\n");
    p
}

#[test]
fn lists_sorted_with_invalid_marked() {
    let out = project().dloop(&["list"]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 0);
}

#[test]
fn json_rows() {
    let out = project().dloop(&["list", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let rows = out.json();
    let rows = rows.as_array().expect("array");
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["alpha", "broken", "zeta"]);
    assert_eq!(rows[0]["description"], "First one.");
    assert_eq!(rows[0]["states"], 1);
    assert_eq!(rows[0]["valid"], true);
    assert_eq!(rows[0]["file"], ".loops/alpha.yaml");
    assert_eq!(rows[1]["valid"], false);
    assert!(rows[1]["problems"].as_u64().expect("problems") >= 1);
    assert!(rows[1]["error"].is_string());
    assert_eq!(rows[2]["states"], 2);
}

#[test]
fn empty_project() {
    let out = TestProject::new().dloop(&["list", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.json(), serde_json::json!([]));
}
