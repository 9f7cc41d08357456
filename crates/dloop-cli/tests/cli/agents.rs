//! Prompt states with the real binary, as far as this build goes: the loop format accepts them
//! (and a `rate_limited` route), and a run whose prompt state has no configured runner profile
//! is refused up front, naming the state and what to do, with nothing created. Runs against the
//! fake agents in tests/fixtures/agents/ (rate limit, SIGKILL during the wait, resume) need the
//! runner registry from `.loops/config.yaml`, which the CLI does not build yet; the same
//! semantics are covered with scripted runners in dloop-runtime's tests/agents.rs.

use crate::common::TestProject;

const ROUTED: &str = "initial: fix\nstates:\n  fix:\n    prompt: Fix the tests\n    runner: claude\n    rate_limit: { waits: [1s, 2s], total: 10s }\n    on: { rate_limited: later, _: done }\n  later:\n    terminal: failure\n  done:\n    terminal: success\n";

#[test]
fn a_prompt_state_may_route_rate_limited_and_a_shell_state_may_not() {
    let p = TestProject::new();
    p.write_loop("fix", ROUTED);
    let out = p.dloop(&["validate", "fix"]);
    assert_eq!(out.code, 0, "{}", out.render());
    p.write_loop(
        "shelly",
        "initial: a\nstates:\n  a:\n    shell: make\n    on: { rate_limited: done, _: done }\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["validate", "shelly"]);
    assert_eq!(out.code, 2, "{}", out.render());
    let shown = out.render();
    assert!(
        shown.contains("never gets verdict `rate_limited`"),
        "{shown}"
    );
}

#[test]
fn a_prompt_state_without_a_configured_runner_is_refused_before_anything_runs() {
    let p = TestProject::new();
    p.write_loop("fix", &ROUTED.replace("runner: claude", "runner: nosuch"));
    let out = p.dloop(&["run", "fix"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stderr
            .contains("state `fix` uses runner profile `nosuch`, which is not configured"),
        "{}",
        out.stderr
    );
    assert!(p.run_dirs().is_empty(), "no run was created");
}
