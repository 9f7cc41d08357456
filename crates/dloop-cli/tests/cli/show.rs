//! `dloop show` in every format.

use crate::common::{TestProject, example_files, repo_root};

fn check_fix() -> String {
    repo_root()
        .join("examples/check-fix.yaml")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn text() {
    let out = TestProject::new().dloop(&["show", &check_fix()]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 0);
}

#[test]
fn mermaid() {
    let out = TestProject::new().dloop(&["show", &check_fix(), "--format", "mermaid"]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 0);
}

#[test]
fn dot() {
    let out = TestProject::new().dloop(&["show", &check_fix(), "--format", "dot"]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 0);
}

/// Every example draws as a well-formed Mermaid state diagram that names every state.
#[test]
fn mermaid_structure_of_every_example() {
    let edge = regex::Regex::new(r"^\s*(\[\*\]|\w+) --> (\[\*\]|\w+)( : .+)?$").expect("regex");
    let state = regex::Regex::new(r#"^\s*state "[^"]+" as \w+$"#).expect("regex");
    let p = TestProject::new();
    for file in example_files() {
        let file = file.to_string_lossy().into_owned();
        let out = p.dloop(&["show", &file, "--format", "mermaid"]);
        assert_eq!(out.code, 0, "{}", out.render());
        let mut lines = out.stdout.lines();
        assert_eq!(lines.next(), Some("stateDiagram-v2"), "{file}");
        let body: Vec<&str> = lines.collect();
        for line in &body {
            assert!(
                edge.is_match(line) || state.is_match(line),
                "{file}: bad line `{line}`"
            );
        }
        assert!(
            body.iter().any(|l| l.trim_start().starts_with("[*] --> ")),
            "{file}: no start"
        );
        assert!(
            body.iter().any(|l| l.ends_with("--> [*]")),
            "{file}: no end"
        );
        let shown = p.dloop(&["show", &file, "--format", "json"]).json();
        for s in shown["states"].as_array().expect("states") {
            let name = s["name"].as_str().expect("name");
            assert!(
                body.iter().any(|l| l.split_whitespace().any(|w| w == name)),
                "{file}: state {name} missing"
            );
        }
    }
}

#[test]
fn json_has_definition_and_resolved_routes() {
    let out = TestProject::new().dloop(&["show", &check_fix(), "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let v = out.json();
    assert_eq!(v["name"], "check-fix");
    assert_eq!(v["definition"]["initial"], "check");
    assert_eq!(v["definition"]["states"]["fix"]["next"], "check");
    let states = v["states"].as_array().expect("states");
    let names: Vec<&str> = states
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["check", "fix", "done"]);
    assert_eq!(states[0]["initial"], true);
    assert_eq!(states[0]["action"], "shell");
    assert_eq!(states[0]["evaluator"], "exit_code");
    let route = |state: &serde_json::Value, verdict: &str| {
        state["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .find(|r| r["verdict"] == verdict)
            .map(|r| r["target"].clone())
    };
    assert_eq!(route(&states[0], "success"), Some("done".into()));
    assert_eq!(route(&states[0], "failure"), Some("fix".into()));
    assert_eq!(route(&states[0], "error"), Some(serde_json::Value::Null));
    assert_eq!(route(&states[1], "success"), Some("check".into()));
    assert_eq!(route(&states[1], "failure"), Some("check".into()));
    assert_eq!(states[2]["terminal"], "success");
    assert_eq!(states[2]["routes"], serde_json::json!([]));
}

#[test]
fn show_by_name_and_unparsable_loop() {
    let p = TestProject::new();
    p.write_loop("broken", "initial: a\nstates: [\n");
    let out = p.dloop(&["show", "broken"]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 2);
}

#[test]
fn long_actions_are_summarized() {
    let p = TestProject::new();
    let long = "x".repeat(100);
    p.write_loop(
        "long",
        &format!("initial: a\nstates:\n  a:\n    shell: echo {long}\n    next: b\n  b:\n    prompt: |\n      first line\n      second line\n    runner: claude\n    next: c\n  c:\n    terminal: failure\n"),
    );
    let out = p.dloop(&["show", "long"]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 0);
}

/// The README's Mermaid example is the real output, so it cannot go stale.
#[test]
fn readme_mermaid_block_is_current() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let block = readme
        .split("```mermaid\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```mermaid block in README.md");
    let out = TestProject::new().dloop(&["show", &check_fix(), "--format", "mermaid"]);
    assert_eq!(out.stdout, block);
}
