//! `dloop import little-loops`: the fixture files of tests/fixtures/little-loops/ (modelled on
//! little-loops' built-in loops, one holding every other construct of the format, and a `from:`
//! child and parent) convert
//! into loops that validate and run, and every construct that does not map is named with its
//! file and line.

use crate::common::{TestProject, repo_root};

fn fixture(name: &str) -> String {
    repo_root()
        .join("tests/fixtures/little-loops")
        .join(name)
        .display()
        .to_string()
}

/// Imports `file` into `imported/` and returns the written loop.
fn import(p: &TestProject, file: &str, loop_name: &str) -> String {
    let out = p.dloop(&[
        "import",
        "little-loops",
        "--out",
        "imported",
        &fixture(file),
    ]);
    assert_eq!(out.code, 0, "{file}: {}", out.render());
    let written = p.read(&format!("imported/{loop_name}.yaml"));
    // The same check as `dloop validate`, from the library and from the binary.
    let (_, problems) = dloop_core::validate::check_loop(written.as_bytes());
    assert!(problems.is_empty(), "{file}: {problems:?}\n{written}");
    let out = p.dloop(&["validate", &format!("imported/{loop_name}.yaml")]);
    assert_eq!(out.code, 0, "{file}: {}", out.render());
    written
}

/// The written loop without its first line (which names the fixture's absolute path).
fn body(written: &str) -> String {
    written.lines().skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
fn fix_quality_and_tests_maps_slash_commands_partial_routes_and_handoff() {
    let p = TestProject::new();
    let written = import(&p, "fix-quality-and-tests.yaml", "fix-quality-and-tests");
    insta::assert_snapshot!(body(&written));
}

#[test]
fn context_health_monitor_maps_routing_states_sources_and_failure_terminals() {
    let p = TestProject::new();
    let written = import(&p, "context-health-monitor.yaml", "context-health-monitor");
    insta::assert_snapshot!(body(&written));
}

#[test]
fn deep_research_maps_inputs_and_the_sub_loop() {
    let p = TestProject::new();
    // The child the sub-loop state names, as the user would import it next to it (reading
    // the context the sub-loop state binds).
    p.write(
        ".loops/research-coverage.yaml",
        "initial: a\ncontext:\n  topic: ''\n  out: ''\nstates:\n  a:\n    shell: 'true'\n    next: b\n  b:\n    terminal: success\n",
    );
    let written = import(&p, "deep-research.yaml", "deep-research");
    insta::assert_snapshot!(body(&written));
}

#[test]
fn an_imported_loop_runs() {
    let p = TestProject::new();
    let written = import(&p, "legacy.yaml", "legacy");
    assert!(
        written.contains("max_steps: 7"),
        "max_iterations alone is max_steps: {written}"
    );
    let out = p.dloop(&["run", "imported/legacy.yaml"]);
    assert_eq!(out.code, 0, "{}", out.render());
}

#[test]
fn every_construct_is_mapped_or_named_with_its_line() {
    let p = TestProject::new();
    let out = p.dloop(&[
        "import",
        "little-loops",
        "--out",
        "imported",
        "--json",
        &fixture("everything.yaml"),
    ]);
    assert_eq!(out.code, 0, "{}", out.render());
    let report = out.json();
    let notes: Vec<(u64, String)> = report[0]["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .map(|n| {
            (
                n["line"].as_u64().expect("line"),
                n["message"].as_str().expect("message").to_owned(),
            )
        })
        .collect();
    let source = std::fs::read_to_string(fixture("everything.yaml")).expect("fixture");
    // Named: each of these has a note on the line where the fixture writes it.
    let named = [
        "category",
        "labels",
        "visibility",
        "commands",
        "parameters",
        "scope",
        "singleton",
        "on_max_steps",
        "max_iterations",
        "on_max_iterations",
        "maintain",
        "llm",
        "on_handoff",
        "config",
        "circuit",
        "host_guard",
        "prompt_size_guard",
        "pruning_profile",
        "tamper_guard",
        "prepatch_check",
        "session_mode",
        "import",
        "targets",
        "mr_3_ok",
        "previous",
        "agent",
        "tools",
        "model",
        "effort",
        "request_path",
        "schema",
        "uncertain_suffix",
        "diff_stall",
        "append_to_messages",
        "max_retries",
        "on_retry_exhausted",
        "retryable_exit_codes",
        "max_rate_limit_retries",
        "rate_limit_backoff_base_seconds",
        "rate_limit_max_wait_seconds",
        "rate_limit_long_wait_ladder",
        "on_rate_limit_exhausted",
        "throttle",
        "on_throttle_hard",
        "cost_ceiling",
        "mcp_tool",
        "params",
        "contract",
        "fragment",
        "learning",
        "context_passthrough",
        "worktree",
        "param.x",
        "result.verdict",
        "messages.last",
        "context.next_state",
        "echo never",
    ];
    for construct in named {
        let line = source
            .lines()
            .position(|l| l.contains(construct))
            .unwrap_or_else(|| panic!("`{construct}` is not in the fixture"))
            as u64
            + 1;
        assert!(
            notes
                .iter()
                .any(|(l, m)| *l == line || m.contains(construct)),
            "`{construct}` (line {line}) has no note: {notes:#?}"
        );
    }
    // Mapped: what the fixture's other constructs became.
    let written = p.read("imported/everything.yaml");
    for mapped in [
        "max_steps: 80",
        "max_edge_visits: 12",
        "timeout: 600s",
        "delay: 2s",
        "on_handoff: pause",
        "timeout: 120s",
        "idle_timeout: 45s",
        "timeout: 60s",
        "idle_timeout: 10s",
        "type: numeric",
        "key: score",
        "operator: ge",
        "type: json",
        "path: a.ok",
        "type: convergence",
        "direction: up",
        "tolerance: 1",
        "type: classify",
        "line: last",
        "left: judge",
        "right: judge",
        "type: llm",
        "min_confidence: 0.7",
        "blocked: summarize",
        "error: summarize",
        "progress: converge",
        "loop: other",
        "terminal: failure",
        "terminal: success",
        "no_valid_transition:",
        "input_key: input",
    ] {
        assert!(written.contains(mapped), "`{mapped}` missing:\n{written}");
    }
    // Notes are also written at the top of the loop, so they travel with it.
    assert!(
        written.contains("#   line 117: state `tool`: action_type `mcp_tool`"),
        "{written}"
    );
}

#[test]
fn check_reports_without_writing_and_a_flow_loop_is_named_not_dropped() {
    let p = TestProject::new();
    let out = p.dloop(&[
        "import",
        "little-loops",
        "--check",
        &fixture("deep-research.yaml"),
    ]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(
        out.stdout.contains("would write .loops/deep-research.yaml"),
        "{}",
        out.stdout
    );
    assert!(!p.root().join(".loops").exists(), "--check writes nothing");

    let flow = fixture("flow.yaml");
    let out = p.dloop(&["import", "little-loops", &flow]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stdout
            .contains("little-loops/flow.yaml:2: `flow` is not mapped"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("not written: the result does not validate"),
        "{}",
        out.stdout
    );
    assert!(!p.root().join(".loops/flow-loop.yaml").exists());
}

#[test]
fn import_never_replaces_a_loop() {
    let p = TestProject::new();
    p.write_loop("legacy", "mine\n");
    let out = p.dloop(&["import", "little-loops", &fixture("legacy.yaml")]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("exists already"), "{}", out.stderr);
    assert_eq!(p.read(".loops/legacy.yaml"), "mine\n");
}

#[test]
fn from_merges_the_parent_found_next_to_the_file() {
    let p = TestProject::new();
    let written = import(&p, "inherit-child.yaml", "inherit-child");
    // The child's scalars win, its maps merge into the parent's.
    for expected in [
        "max_steps: 4",
        "cmd: \"true\"",
        "extra: \"1\"",
        "timeout: 5s",
        "shell: \"${context.cmd:raw}\"",
        "failure: failed",
    ] {
        assert!(
            written.contains(expected),
            "`{expected}` missing:\n{written}"
        );
    }
    assert!(
        written.contains("#   line 2: `from:` was resolved"),
        "{written}"
    );
    let out = p.dloop(&["run", "imported/inherit-child.yaml"]);
    assert_eq!(out.code, 0, "{}", out.render());
}
