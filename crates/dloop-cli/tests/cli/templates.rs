//! `dloop new --template T`, `dloop new --list` and `dloop init --template T`: every built-in
//! template is written, validates, and runs to completion against the fake agents of
//! tests/fixtures/agents/ (first on PATH, so the built-in `claude` profile runs the fake).

use crate::common::{TestProject, repo_root};

/// PATH with the fake agents first.
fn fake_path() -> String {
    let agents = repo_root().join("tests/fixtures/agents");
    format!(
        "{}:{}",
        agents.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Creates loop `name` from `template`, validates it, runs it with `run_args` and the fake
/// agents configured by `env`, and returns the finished run's `inspect --json`.
fn new_and_run(
    p: &TestProject,
    name: &str,
    template: &str,
    run_args: &[&str],
    env: &[(&str, &str)],
) -> serde_json::Value {
    let out = p.dloop(&["new", name, "--template", template]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(p.root().join(format!(".loops/{name}.yaml")).is_file());
    let out = p.dloop(&["validate", name]);
    assert_eq!(out.code, 0, "{template}: {}", out.render());
    let path = fake_path();
    let mut env = env.to_vec();
    env.push(("PATH", &path));
    let mut args = vec!["run", name];
    args.extend_from_slice(run_args);
    let out = p.dloop_env(&args, &env);
    assert_eq!(out.code, 0, "{template}: {}", out.render());
    let out = p.dloop(&["inspect", name, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let json = out.json();
    assert_eq!(json["status"], "completed", "{template}: {json}");
    assert_eq!(json["state"], "done", "{template}: {json}");
    json
}

/// How often the finished run entered `state`.
fn visits(json: &serde_json::Value, state: &str) -> u64 {
    json["states"][state]["visits"].as_u64().unwrap_or(0)
}

#[test]
fn fix_tests_template_fixes_failing_tests_with_the_agent() {
    let p = TestProject::new();
    let json = new_and_run(
        &p,
        "ft",
        "fix-tests",
        &["test -f fixed.txt"],
        &[
            ("FAKE_AGENT_MODE", "edit"),
            ("FAKE_AGENT_EDIT", "fixed.txt:ok"),
        ],
    );
    assert_eq!(visits(&json, "fix"), 1, "{json}");
    assert_eq!(visits(&json, "test"), 2, "{json}");
    assert_eq!(p.read("fixed.txt"), "ok\n");
}

#[test]
fn fix_lint_template_reruns_the_checker_after_the_agent() {
    let p = TestProject::new();
    p.write("lint.txt", "warning: unused variable\n");
    let json = new_and_run(
        &p,
        "fl",
        "fix-lint",
        &["! grep -q warning lint.txt"],
        &[
            ("FAKE_AGENT_MODE", "edit"),
            ("FAKE_AGENT_EDIT", "lint.txt:clean"),
        ],
    );
    assert_eq!(visits(&json, "fix"), 1, "{json}");
    assert_eq!(visits(&json, "check"), 2, "{json}");
}

#[test]
fn implement_issue_template_sends_failing_tests_back_to_the_implementer_then_reviews() {
    let p = TestProject::new();
    // Calls: implement (changes nothing: the tests fail), implement (writes the file), review.
    let script = p.write("script", "ok\nedit\nok\n");
    let script = script.display().to_string();
    let json = new_and_run(
        &p,
        "ii",
        "implement-issue",
        &["Add feature.txt", "-c", "test_cmd=test -f feature.txt"],
        &[
            ("FAKE_AGENT_SCRIPT", &script),
            ("FAKE_AGENT_EDIT", "feature.txt:feature"),
            ("FAKE_AGENT_TEXT", "APPROVED"),
        ],
    );
    assert_eq!(visits(&json, "implement"), 2, "{json}");
    assert_eq!(visits(&json, "test"), 2, "{json}");
    assert_eq!(visits(&json, "review"), 1, "{json}");
    assert_eq!(p.read("feature.txt"), "feature\n");
}

#[test]
fn refine_doc_template_ends_when_the_judge_approves() {
    let p = TestProject::new();
    p.write("doc.md", "draft\n");
    let json = new_and_run(
        &p,
        "rd",
        "refine-doc",
        &["doc.md"],
        &[
            ("FAKE_AGENT_MODE", "edit"),
            ("FAKE_AGENT_EDIT", "doc.md:# Better"),
            ("FAKE_AGENT_TEXT", "Looks good.\nAPPROVED"),
        ],
    );
    assert_eq!(visits(&json, "judge"), 1, "{json}");
    assert_eq!(p.read("doc.md"), "# Better\n");
}

#[test]
fn refine_doc_template_sends_the_judges_objections_back_and_gives_up_at_the_edge_limit() {
    let p = TestProject::new();
    let out = p.dloop(&["new", "rd", "--template", "refine-doc"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let path = fake_path();
    let out = p.dloop_env(
        &["run", "rd", "doc.md"],
        &[
            ("PATH", &path),
            ("FAKE_AGENT_TEXT", "The introduction is missing."),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.render());
    let json = p.dloop(&["inspect", "rd", "--json"]).json();
    assert_eq!(json["status"], "failed", "{json}");
    assert!(visits(&json, "judge") > 1, "{json}");
}

#[test]
fn shell_retry_template_retries_until_the_command_succeeds() {
    let p = TestProject::new();
    let json = new_and_run(
        &p,
        "sr",
        "shell-retry",
        &["test -f flag || { touch flag; false; }", "-c", "pause_s=0"],
        &[],
    );
    assert_eq!(visits(&json, "attempt"), 2, "{json}");
    assert_eq!(visits(&json, "pause"), 1, "{json}");
}

#[test]
fn new_list_describes_every_template() {
    let p = TestProject::new();
    let out = p.dloop(&["new", "--list"]);
    insta::assert_snapshot!(out.render());
    let json = p.dloop(&["new", "--list", "--json"]).json();
    let names: Vec<_> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "fix-tests",
            "fix-lint",
            "implement-issue",
            "refine-doc",
            "shell-retry"
        ]
    );
}

#[test]
fn new_refuses_an_unknown_template_an_existing_file_and_a_bad_name() {
    let p = TestProject::new();
    let out = p.dloop(&["new", "x", "--template", "nosuch"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stderr.contains("there is no template `nosuch`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("shell-retry"), "{}", out.stderr);
    p.write_loop("x", "mine\n");
    let out = p.dloop(&["new", "x", "--template", "shell-retry"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("exists already"), "{}", out.stderr);
    assert_eq!(p.read(".loops/x.yaml"), "mine\n");
    let out = p.dloop(&["new", "../x", "--template", "shell-retry"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("is not a loop name"), "{}", out.stderr);
}

#[test]
fn init_with_a_template_writes_that_loop_instead_of_the_example() {
    let p = TestProject::new();
    let out = p.dloop(&["init", "--template", "fix-tests"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(!p.root().join(".loops/check-fix.yaml").exists());
    assert!(p.read(".loops/fix-tests.yaml").contains("name: fix-tests"));
    assert_eq!(p.dloop(&["validate"]).code, 0);
    let p = TestProject::new();
    let out = p.dloop(&["init", "--template", "nosuch"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(!p.root().join(".loops").exists(), "nothing written");
}

/// The README's template list is `dloop new --list`'s real output, so it cannot go stale.
#[test]
fn readme_template_list_is_current() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let out = TestProject::new().dloop(&["new", "--list"]);
    let listed = out
        .stdout
        .split("\n\n")
        .next()
        .expect("the list before the hint");
    assert!(
        readme.contains(&format!("```\n{listed}\n```")),
        "README.md's Templates block differs from:\n{listed}"
    );
}
