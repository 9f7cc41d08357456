//! `dloop validate`: exit codes, `file:line:col` with snippets, `--json`.

use crate::common::{TestProject, example_files};

/// Writes `text` as `.loops/bad.yaml`, validates it, and returns the rendered output after
/// checking the exit code is 2 and the output points at `bad.yaml:LINE:COL`.
fn rejected(text: &str) -> String {
    let p = TestProject::new();
    p.write_loop("bad", text);
    let out = p.dloop(&["validate", "bad"]);
    assert_eq!(out.code, 2, "{}", out.render());
    let located = regex::Regex::new(r"\.loops/bad\.yaml:\d+:\d+").expect("regex");
    assert!(
        located.is_match(&out.stdout),
        "no file:line:col in\n{}",
        out.render()
    );
    out.render()
}

#[test]
fn yaml_syntax_error() {
    insta::assert_snapshot!(rejected("initial: a\nstates:\n  a: [unclosed\n"));
}

#[test]
fn unknown_field_with_suggestion() {
    insta::assert_snapshot!(rejected(
        "initial: a\nstates:\n  a:\n    shell: 'true'\n    on_sucess: { success: done }\n  done:\n    terminal: success\n"
    ));
}

#[test]
fn bad_duration() {
    insta::assert_snapshot!(rejected(
        "initial: a\nlimits:\n  timeout: soon\nstates:\n  a:\n    terminal: success\n"
    ));
}

#[test]
fn examples_are_valid() {
    let p = TestProject::new();
    let mut args = vec!["validate".to_owned()];
    args.extend(
        example_files()
            .iter()
            .map(|f| f.to_string_lossy().into_owned()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = p.dloop(&args);
    assert_eq!(out.code, 0, "{}", out.render());
}

#[test]
fn no_loops_named_validates_all_and_reports_each_file() {
    let p = TestProject::new();
    p.write_loop("good", "initial: a\nstates:\n  a:\n    terminal: success\n");
    p.write_loop("bad1", "initial: a\nstates: [\n");
    p.write_loop("bad2", "initial: a\nstatez: {}\n");
    let out = p.dloop(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stdout.contains(".loops/bad1.yaml:"), "{}", out.render());
    assert!(out.stdout.contains(".loops/bad2.yaml:"), "{}", out.render());
}

#[test]
fn clean_project_exits_zero() {
    let p = TestProject::new();
    p.write_loop("good", "initial: a\nstates:\n  a:\n    terminal: success\n");
    let out = p.dloop(&["validate"]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 0);
}

#[test]
fn json_lists_problems_with_location() {
    let p = TestProject::new();
    p.write_loop("good", "initial: a\nstates:\n  a:\n    terminal: success\n");
    p.write_loop(
        "bad",
        "initial: a\nstates:\n  a:\n    terminal: success\n    shel: x\n",
    );
    let out = p.dloop(&["validate", "--json"]);
    assert_eq!(out.code, 2, "{}", out.render());
    let problems = out.json();
    let problems = problems.as_array().expect("array");
    assert!(!problems.is_empty());
    let first = &problems[0];
    assert_eq!(first["file"], ".loops/bad.yaml");
    assert_eq!(first["line"], 5);
    assert_eq!(first["column"], 5);
    assert!(
        first["message"].as_str().expect("message").contains("shel"),
        "{first}"
    );
    assert!(first.get("help").is_some());
    assert!(problems.iter().all(|p| p["file"] == ".loops/bad.yaml"));
    assert!(
        out.stderr.is_empty(),
        "--json keeps stderr quiet: {}",
        out.stderr
    );
}

#[test]
fn json_is_an_empty_array_when_clean() {
    let p = TestProject::new();
    p.write_loop("good", "initial: a\nstates:\n  a:\n    terminal: success\n");
    let out = p.dloop(&["validate", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.json(), serde_json::json!([]));
}

#[test]
fn missing_initial() {
    insta::assert_snapshot!(rejected("states:\n  a:\n    terminal: success\n"));
}

#[test]
fn route_to_missing_state() {
    insta::assert_snapshot!(rejected(
        "initial: a\nstates:\n  a:\n    shell: 'true'\n    on: { success: dne, failure: done }\n  done:\n    terminal: success\n"
    ));
}

#[test]
fn unreachable_state() {
    insta::assert_snapshot!(rejected(
        "initial: a\nstates:\n  a:\n    shell: 'true'\n    next: done\n  lost:\n    shell: 'true'\n    next: done\n  done:\n    terminal: success\n"
    ));
}

#[test]
fn unrouted_verdict() {
    insta::assert_snapshot!(rejected(
        "initial: a\nstates:\n  a:\n    shell: 'true'\n    on: { success: done }\n  done:\n    terminal: success\n"
    ));
}

#[test]
fn no_terminal_reachable() {
    insta::assert_snapshot!(rejected(
        "initial: a\nstates:\n  a:\n    shell: 'true'\n    next: b\n  b:\n    shell: 'true'\n    next: a\n"
    ));
}

#[test]
fn unknown_context_key() {
    insta::assert_snapshot!(rejected(
        "initial: a\ncontext:\n  known: x\nstates:\n  a:\n    shell: echo ${context.unknwn}\n    next: done\n  done:\n    terminal: success\n"
    ));
}

#[test]
fn subloop_cycle() {
    let p = TestProject::new();
    p.write_loop(
        "bad",
        "initial: a\nstates:\n  a:\n    loop: other\n    next: done\n  done:\n    terminal: success\n",
    );
    p.write_loop(
        "other",
        "initial: a\nstates:\n  a:\n    loop: bad\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["validate", "bad"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stdout.contains(".loops/bad.yaml:4:"),
        "{}",
        out.render()
    );
    insta::assert_snapshot!(out.render());
}
