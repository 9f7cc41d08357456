//! Loop files that read fine but make no sense: each rejection by name, with its `line:col`.

use dloop_core::parse::parse_loop;
use dloop_core::validate::{check_loop, check_subloop_cycles};

use crate::{located, only, problems};

const FULL: &str = include_str!("../fixtures/loops/full.yaml");

#[test]
fn full_featured_loop_is_clean() {
    let (parsed, diags) = check_loop(FULL.as_bytes());
    assert_eq!(diags, []);
    let def = parsed.expect("parsed").def;
    assert_eq!(def.states.len(), 10);
    let types: Vec<&str> = def
        .states
        .values()
        .filter_map(|s| s.evaluate.as_ref())
        .map(|e| e.type_name())
        .collect();
    for t in [
        "exit_code",
        "llm",
        "convergence",
        "contains",
        "numeric",
        "json",
        "classify",
    ] {
        assert!(types.contains(&t), "{t} missing from the fixture");
    }
}

#[test]
fn missing_initial() {
    let (at, help) = only("states:\n  a: { terminal: success }\n");
    assert_eq!(at, "1:1 missing `initial`: the state a run starts in");
    assert_eq!(
        help.as_deref(),
        Some("add `initial: a` (or another state: `a`)")
    );
}

#[test]
fn initial_naming_no_state() {
    let src = "initial: tset\nstates:\n  test: { shell: make, next: done }\n  done: { terminal: success }\n";
    let (at, help) = only(src);
    assert_eq!(
        at,
        "1:10 `initial` names state `tset`, which does not exist"
    );
    assert_eq!(help.as_deref(), Some("did you mean `test`?"));
}

#[test]
fn route_to_missing_state() {
    let src = "initial: test\nstates:\n  test:\n    shell: make\n    on: { success: dnoe, failure: done }\n  done: { terminal: success }\n";
    let (at, help) = only(src);
    assert_eq!(
        at,
        "5:20 route `success` of state `test` goes to state `dnoe`, which does not exist"
    );
    assert_eq!(help.as_deref(), Some("did you mean `done`?"));
}

#[test]
fn next_and_on_exhausted_to_missing_states() {
    let src = "initial: a\nstates:\n  a:\n    prompt: p\n    retries: { max: 1, on_exhausted: nope }\n    next: gone\n  done: { terminal: success }\n";
    assert_eq!(
        problems(src),
        [
            "1:10 no terminal state can be reached from `initial` state `a`",
            "5:38 `retries.on_exhausted` of state `a` goes to state `nope`, which does not exist",
            "6:11 `next` of state `a` goes to state `gone`, which does not exist",
            "7:3 state `done` is unreachable from `initial` state `a`",
        ]
    );
}

#[test]
fn unreachable_state() {
    let src = "initial: a\nstates:\n  a: { shell: make, next: done }\n  orphan: { shell: x, next: done }\n  done: { terminal: success }\n";
    let (at, _) = only(src);
    assert_eq!(
        at,
        "4:3 state `orphan` is unreachable from `initial` state `a`"
    );
}

#[test]
fn verdict_with_no_route() {
    let src = "initial: a\nstates:\n  a:\n    shell: make\n    on: { success: done }\n  done: { terminal: success }\n";
    let (at, help) = only(src);
    assert_eq!(at, "5:5 state `a` has no route for verdict `failure`");
    assert!(
        help.expect("help")
            .starts_with("evaluator `exit_code` can give `failure`")
    );
}

#[test]
fn prompt_verdicts_with_no_route_are_listed_together() {
    let src = "initial: a\nstates:\n  a:\n    prompt: do it\n    on: { success: done }\n  done: { terminal: success }\n";
    let (at, _) = only(src);
    assert_eq!(
        at,
        "5:5 state `a` has no route for verdicts `failure`, `partial` and `blocked`"
    );
}

#[test]
fn error_verdict_needs_no_route_and_retries_exhausted_routes() {
    let src = "initial: a\nstates:\n  a:\n    prompt: do it\n    retries: { max: 2, on: [failure, partial, blocked], on_exhausted: done }\n    on: { success: done }\n  done: { terminal: success }\n";
    assert_eq!(problems(src), Vec::<String>::new());
}

#[test]
fn classify_needs_a_default_route() {
    let src = "initial: a\nstates:\n  a:\n    shell: ./judge\n    evaluate: classify\n    on: { ship: done }\n  done: { terminal: success }\n";
    let (at, _) = only(src);
    assert_eq!(
        at,
        "6:5 state `a` uses `classify`, which can give any verdict, but has no default route"
    );
}

#[test]
fn route_key_never_produced() {
    let src = "initial: a\nstates:\n  a:\n    shell: make\n    on: { sucess: done, _: done }\n  done: { terminal: success }\n";
    let (at, help) = only(src);
    assert_eq!(at, "5:11 state `a` never gets verdict `sucess`");
    assert_eq!(help.as_deref(), Some("did you mean `success`?"));
}

#[test]
fn prompt_states_may_route_rate_limited_and_shell_states_may_not() {
    let prompt = "initial: a\nstates:\n  a:\n    prompt: do it\n    on: { rate_limited: later, _: done }\n  later: { terminal: failure }\n  done: { terminal: success }\n";
    assert_eq!(problems(prompt), Vec::<String>::new());
    let shell = "initial: a\nstates:\n  a:\n    shell: make\n    on: { rate_limited: done, _: done }\n  done: { terminal: success }\n";
    let (at, _) = only(shell);
    assert_eq!(at, "5:11 state `a` never gets verdict `rate_limited`");
}

#[test]
fn no_reachable_terminal() {
    let src = "initial: a\nstates:\n  a: { shell: make, next: b }\n  b: { shell: make, next: a }\n";
    let (at, help) = only(src);
    assert_eq!(
        at,
        "1:10 no terminal state can be reached from `initial` state `a`"
    );
    assert_eq!(
        help.as_deref(),
        Some("add a state with `terminal: success` and route to it")
    );
}

#[test]
fn two_actions_in_one_state() {
    let src = "initial: a\nstates:\n  a:\n    shell: make\n    prompt: fix it\n    next: done\n  done: { terminal: success }\n";
    let (at, _) = only(src);
    assert_eq!(at, "5:5 state `a` has two actions, `shell` and `prompt`");
}

#[test]
fn terminal_state_with_routes_or_action() {
    let src = "initial: a\nstates:\n  a: { shell: make, next: done }\n  done:\n    terminal: success\n    shell: echo bye\n    next: a\n";
    assert_eq!(
        problems(src),
        [
            "6:5 terminal state `done` cannot have an action",
            "7:5 terminal state `done` cannot have routes",
        ]
    );
}

#[test]
fn dead_end_state() {
    let src = "initial: a\nstates:\n  a: { shell: make, on: { success: done, failure: stuck } }\n  stuck:\n    description: nothing here\n  done: { terminal: success }\n";
    let (at, _) = only(src);
    assert_eq!(
        at,
        "4:3 state `stuck` is a dead end: no action, no routes, not terminal"
    );
}

#[test]
fn bad_regex_and_min_confidence() {
    let src = "initial: a\nstates:\n  a:\n    shell: make\n    evaluate: { type: contains, pattern: \"(oops\" }\n    next: b\n  b:\n    prompt: p\n    evaluate: { type: llm, min_confidence: 1.5 }\n    next: done\n  done: { terminal: success }\n";
    assert_eq!(
        problems(src),
        [
            "5:42 invalid regex in `pattern`: unclosed group",
            "9:44 `min_confidence` must be between 0 and 1, got 1.5",
        ]
    );
}

#[test]
fn undefined_context_key() {
    let src = "initial: a\ncontext: { test_cmd: make }\nstates:\n  a:\n    shell: ${context.test_cmd} && ${context.tset_cmd} ${context.input} ${context.maybe?}\n    next: done\n  done: { terminal: success }\n";
    let (at, help) = only(src);
    assert_eq!(
        at,
        "5:35 `${context.tset_cmd}` names context key `tset_cmd`, which is not defined"
    );
    assert_eq!(help.as_deref(), Some("did you mean `test_cmd`?"));
}

#[test]
fn undefined_context_key_in_a_block_prompt() {
    let src = "initial: a\nrequired: [task]\nstates:\n  a:\n    prompt: |\n      Do ${context.task}.\n      Then ${context.other}.\n    next: done\n  done: { terminal: success }\n";
    let (at, _) = only(src);
    assert_eq!(
        at,
        "7:12 `${context.other}` names context key `other`, which is not defined"
    );
}

#[test]
fn unknown_namespace() {
    let src = "initial: a\ncontext: { x: 1 }\nstates:\n  a:\n    shell: echo ${contxt.x} ${HOME} $${contxt.y}\n    next: done\n  done: { terminal: success }\n";
    let (at, help) = only(src);
    assert_eq!(
        at,
        "5:17 unknown interpolation namespace `contxt` in `${contxt.x}`"
    );
    assert_eq!(help.as_deref(), Some("did you mean `context`?"));
}

#[test]
fn captured_prev_state_run_fields() {
    let src = "\
initial: a
states:
  a:
    shell: make
    capture: tests
    next: b
  b:
    prompt: ${captured.test.output} ${captured.tests.outptu} ${prev.exit} ${state.name} ${run.loops}
    evaluate: { type: llm, prompt: \"${captured.tests}\" }
    with: { v: \"${state.visit.x}\" }
    next: done
  done: { terminal: success }
";
    assert_eq!(
        problems(src),
        [
            "8:13 `${captured.test.output}` names capture `test`, which no state defines",
            "8:37 `${captured.tests.outptu}` names no field `outptu` of a capture",
            "8:62 `${prev.exit}` names no field `exit` of `prev`",
            "8:89 `${run.loops}` names no field `loops` of `run`",
            "9:37 `${captured.tests}` needs exactly one field after the capture's name",
            "10:17 `${state.visit.x}` takes one field after `state.`",
        ]
    );
}

#[test]
fn several_independent_semantic_errors_are_all_reported() {
    let src = "\
initial: test
states:
  test:
    shell: ${context.cmd}
    on: { success: done, failure: fixx }
  fix:
    shell: make
    prompt: also
    next: test
  orphan:
    next: test
  done:
    terminal: success
";
    assert_eq!(
        problems(src),
        [
            "4:12 `${context.cmd}` names context key `cmd`, which is not defined",
            "5:35 route `failure` of state `test` goes to state `fixx`, which does not exist",
            "6:3 state `fix` is unreachable from `initial` state `test`",
            "8:5 state `fix` has two actions, `shell` and `prompt`",
            "10:3 state `orphan` is unreachable from `initial` state `test`",
        ]
    );
}

fn parsed(src: &str) -> dloop_core::parse::ParsedLoop {
    parse_loop(src.as_bytes()).expect("parses")
}

#[test]
fn subloop_cycle() {
    let a = parsed(
        "initial: s\nstates:\n  s:\n    loop: b\n    next: done\n  done: { terminal: success }\n",
    );
    let b = parsed(
        "initial: s\nstates:\n  s:\n    loop: c\n    next: done\n  done: { terminal: success }\n",
    );
    let c = parsed(
        "initial: s\nstates:\n  s:\n    loop: a\n    next: done\n  done: { terminal: success }\n",
    );
    let d = parsed(
        "initial: s\nstates:\n  s:\n    loop: d\n    next: done\n  done: { terminal: success }\n",
    );
    let e = parsed(
        "initial: s\nstates:\n  s:\n    loop: relase\n    next: done\n  done: { terminal: success }\n",
    );
    let release = parsed("initial: done\nstates:\n  done: { terminal: success }\n");
    let loops = [
        ("a".to_owned(), &a),
        ("b".to_owned(), &b),
        ("c".to_owned(), &c),
        ("d".to_owned(), &d),
        ("e".to_owned(), &e),
        ("release".to_owned(), &release),
    ];
    let found: Vec<(String, String, Option<String>)> = check_subloop_cycles(&loops)
        .into_iter()
        .map(|(name, d)| (name, located(&d), d.help))
        .collect();
    let help = Some("a loop cannot run itself, directly or through other loops".to_owned());
    assert_eq!(
        found,
        [
            (
                "a".to_owned(),
                "4:11 sub-loop cycle: `a` -> `b` -> `c` -> `a`".to_owned(),
                help.clone()
            ),
            (
                "b".to_owned(),
                "4:11 sub-loop cycle: `b` -> `c` -> `a` -> `b`".to_owned(),
                help.clone()
            ),
            (
                "c".to_owned(),
                "4:11 sub-loop cycle: `c` -> `a` -> `b` -> `c`".to_owned(),
                help.clone()
            ),
            (
                "d".to_owned(),
                "4:11 sub-loop cycle: `d` -> `d`".to_owned(),
                help
            ),
            (
                "e".to_owned(),
                "4:11 state `s` runs loop `relase`, which does not exist".to_owned(),
                Some("did you mean `release`?".to_owned())
            ),
        ]
    );
}

/// A loop with one shell state `a` running `shell` (a block scalar) and capture `out`.
fn shell_loop(shell: &str) -> String {
    let body: String = shell.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "initial: a\ncontext:\n  n: '1'\nstates:\n  a:\n    capture: out\n    shell: |\n{body}    next: done\n  done:\n    terminal: success\n"
    )
}

#[test]
fn references_in_quoted_heredocs_are_refused_with_a_way_out() {
    for opener in ["<<'EOF'", "<<\"EOF\"", "<<\\EOF", "<<-'EOF'"] {
        let src = shell_loop(&format!("cat {opener}\ngot ${{captured.out.output}}\nEOF"));
        let (at, help) = only(&src);
        assert_eq!(
            at.split_once(" `").map(|p| p.0),
            Some("9:11"),
            "{opener}: {at}"
        );
        assert!(at.contains("quoted heredoc"), "{at}");
        let help = help.expect("help");
        assert!(help.contains("unquoted heredoc"), "{help}");
        assert!(
            help.contains("printf '%s\\n' ${captured.out.output}"),
            "{help}"
        );
    }
}

#[test]
fn references_in_arithmetic_are_refused() {
    for (shell, col) in [
        ("echo $(( ${context.n} + 1 ))", 16),
        ("(( x = ${context.n} ))", 14),
        ("echo $[${context.n}]", 14),
        ("echo $(( $(cat ${context.n}) ))", 22),
    ] {
        let (at, help) = only(&shell_loop(shell));
        assert_eq!(
            at.split_once(" `").map(|p| p.0),
            Some(format!("8:{col}").as_str()),
            "{shell}: {at}"
        );
        assert!(at.contains("arithmetic"), "{at}");
        assert!(help.expect("help").contains("check it is a number"));
    }
}

#[test]
fn safe_forms_and_raw_references_are_accepted() {
    for shell in [
        "echo ${context.n} \"${context.n}\" '${context.n}' $'${context.n}'",
        "X=${context.n}; Y=\"${context.n}\"; echo $(echo ${context.n}) `echo ${context.n}`",
        "cat <<EOF\n${context.n}\nEOF",
        "echo $(( ${context.n:raw} + 1 ))",
        "cat <<'EOF'\n${context.n:raw}\nEOF",
        "echo $${context.n} $((1 + 2)) # ${context.n}",
    ] {
        assert_eq!(
            problems(&shell_loop(shell)),
            Vec::<String>::new(),
            "{shell}"
        );
    }
}

#[test]
fn prompts_may_reference_anywhere() {
    let src = "initial: a\ncontext:\n  n: '1'\nstates:\n  a:\n    prompt: \"cat <<'EOF'\\n${context.n}\\nEOF $((${context.n}))\"\n    next: done\n  done:\n    terminal: success\n";
    assert_eq!(problems(src), Vec::<String>::new());
}

#[test]
fn state_names_that_could_leave_the_run_folder_are_refused() {
    for (name, what) in [
        ("\"a/b\"", "contains '/'"),
        ("\"../x\"", "contains '/'"),
        ("\"..x\"", "starts with '.'"),
        ("\"a..b\"", "contains `..`"),
        ("\"-x\"", "starts with '-'"),
        ("\"a b\"", "contains ' '"),
        ("\"é\"", "contains 'é'"),
    ] {
        let src = format!(
            "initial: {name}\nstates:\n  {name}:\n    shell: 'true'\n    next: done\n  done:\n    terminal: success\n"
        );
        let (at, help) = only(&src);
        assert!(at.starts_with("3:3 state name `"), "{name}: {at}");
        assert!(at.ends_with(what), "{name}: {at}");
        assert!(help.expect("help").contains("ASCII letters"));
        // Parsing alone still accepts it: a run stored by an older version must resume.
        assert!(parse_loop(src.as_bytes()).is_ok());
    }
    let src = "initial: _a.b-1\nstates:\n  _a.b-1:\n    shell: 'true'\n    next: done\n  done:\n    terminal: success\n";
    assert_eq!(problems(src), Vec::<String>::new());
}
