//! Snapshots of rendered diagnostics for the main rejection cases.

use dloop_core::diagnostic::render;
use dloop_core::validate::check_loop;

/// Every diagnostic of `source`, rendered against `.loops/fix.yaml`.
fn rendered(source: &str) -> String {
    let (_, diags) = check_loop(source.as_bytes());
    assert!(!diags.is_empty(), "expected problems");
    diags
        .iter()
        .map(|d| render(d, ".loops/fix.yaml", source))
        .collect::<Vec<_>>()
        .join("\n")
}

const FIX: &str = "\
name: fix-tests
initial: test
context:
  test_cmd: cargo test
states:
  test:
    shell: ${context.test_cmd:raw}
    capture: tests
    on: { success: done, failure: fix }
  fix:
    prompt: |
      The tests fail:
      ${captured.tests.output}
    next: test
  done:
    terminal: success
";

#[test]
fn unknown_field() {
    let src = FIX.replace(
        "    on: { success: done, failure: fix }",
        "    on_sucess: { success: done }",
    );
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn yaml_syntax_error() {
    insta::assert_snapshot!(rendered(&FIX.replace("capture: tests", "capture: [tests")));
}

#[test]
fn route_to_missing_state() {
    insta::assert_snapshot!(rendered(&FIX.replace("failure: fix", "failure: fxi")));
}

#[test]
fn missing_initial() {
    insta::assert_snapshot!(rendered(&FIX.replace("initial: test\n", "")));
}

#[test]
fn undefined_context_and_unknown_namespace() {
    let src = FIX.replace(
        "${captured.tests.output}",
        "${context.tset_cmd} ${contxt.x}",
    );
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn unreachable_state_and_unrouted_verdict() {
    let src = FIX.replace("failure: fix", "error: done");
    insta::assert_snapshot!(rendered(&src));
}

#[test]
fn bad_duration_with_tabs_and_multibyte() {
    let src = "initial: test # é✓\nlimits: {\ttimeout: \"5 parsecs\" } # ✓✓\nstates:\n  test: { terminal: success }\n";
    insta::assert_snapshot!(rendered(src));
}

#[test]
fn file_too_large() {
    insta::assert_snapshot!(rendered(&"#".repeat(2 * 1024 * 1024)));
}
