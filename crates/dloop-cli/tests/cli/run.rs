//! `dloop run`: human output, dry runs, refusals before anything starts, exit codes.

use crate::common::{TestProject, redact_runs};

/// Run-output redaction plus the `(m:ss)` clock of the closing line.
fn redact_clock(text: &str) -> String {
    let clock = regex::Regex::new(r"\(\d+:\d{2}(:\d{2})?\)").expect("regex");
    clock.replace_all(&redact_runs(text), "(M:SS)").into_owned()
}

const CHECK_FIX: &str = include_str!("../../../../examples/check-fix.yaml");

#[test]
fn run_prints_one_line_per_step_and_how_it_ended() {
    let p = TestProject::new();
    p.write_loop("check-fix", CHECK_FIX);
    let out = p.dloop(&["run", "check-fix"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(redact_clock(&out.render()));
}

#[test]
fn failed_run_exits_1_and_says_why() {
    let p = TestProject::new();
    p.write_loop(
        "fails",
        "initial: a\nstates:\n  a:\n    shell: echo nope; exit 3\n    on: { success: done, failure: bad }\n  done:\n    terminal: success\n  bad:\n    terminal: failure\n",
    );
    let out = p.dloop(&["run", "fails"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    insta::assert_snapshot!(redact_clock(&out.render()));
}

#[test]
fn dry_run_prints_the_plan_and_context_and_starts_nothing() {
    let p = TestProject::new();
    p.write_loop(
        "greet",
        "initial: hello\ncontext:\n  who: world\nstates:\n  hello:\n    shell: echo hello ${context.who}\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&[
        "run",
        "greet",
        "-c",
        "who=it's me",
        "--max-steps",
        "7",
        "--dry-run",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(out.render());
    assert!(
        !p.root().join(".loops/.dloop/runs").exists(),
        "a dry run created a run"
    );
}

#[test]
fn missing_required_context_is_refused_naming_each_key() {
    let p = TestProject::new();
    p.write_loop(
        "needs",
        "initial: a\nrequired: [target, branch]\nstates:\n  a:\n    shell: echo ${context.target} ${context.branch}\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "needs", "-c", "branch=main"]);
    assert_eq!(out.code, 2);
    insta::assert_snapshot!(out.render());
    assert!(
        !p.root().join(".loops/.dloop/runs").exists(),
        "a refused run created a run"
    );
    let out = p.dloop(&["run", "needs", "-c", "branch=main", "-c", "target=x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn positional_input_sets_the_input_key() {
    let p = TestProject::new();
    p.write_loop(
        "echo",
        "initial: a\ninput_key: message\nrequired: [message]\nstates:\n  a:\n    shell: printf '%s' ${context.message} > \"$DLOOP_RUN_DIR/said\"\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "echo", "$(touch pwned) hi", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["context"]["message"], "$(touch pwned) hi");
    assert!(!p.root().join("pwned").exists());
}

#[test]
fn prompt_loops_on_an_unknown_runner_are_refused_before_a_run_is_created() {
    let p = TestProject::new();
    p.write_loop(
        "agent",
        "initial: fix\nstates:\n  fix:\n    prompt: fix it\n    runner: nosuch\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "agent"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("state `fix`"), "{}", out.stderr);
    assert!(!p.root().join(".loops/.dloop/runs").exists());
}

#[test]
fn invalid_loop_is_refused_with_its_diagnostics() {
    let p = TestProject::new();
    p.write_loop(
        "bad",
        "initial: a\nstates:\n  a:\n    shell: true\n    next: nowhere\n",
    );
    let out = p.dloop(&["run", "bad"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(".loops/bad.yaml:5:11"),
        "{}",
        out.stderr
    );
}

#[test]
fn every_example_runs_to_completion_with_no_agent_installed() {
    // A copy of the repository's examples and its `.loops/config.yaml` (the `fake` profile of
    // agent-fix): the README promises each runs as it is.
    let p = TestProject::new();
    let repo = crate::common::repo_root();
    p.write(
        ".loops/config.yaml",
        &std::fs::read_to_string(repo.join(".loops/config.yaml")).expect("config"),
    );
    let agent = p.write(
        "examples/agents/fake-agent",
        &std::fs::read_to_string(repo.join("examples/agents/fake-agent")).expect("agent"),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for example in crate::common::example_files() {
        let name = example
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let copy = format!("examples/{name}");
        p.write(&copy, &std::fs::read_to_string(&example).expect("example"));
        let out = p.dloop(&["run", &copy]);
        assert_eq!(out.code, 0, "{name}: {}", out.render());
    }
}
