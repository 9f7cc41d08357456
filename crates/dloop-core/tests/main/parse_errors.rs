//! Loop files refused while reading: guards, YAML syntax, unknown fields, bad values.

use crate::{only, problems};

#[test]
fn yaml_syntax_error() {
    let (at, _) = only("initial: a\nstates:\n  a: [1, 2\n  b: 3\n");
    assert!(at.starts_with("4:4 invalid YAML: "), "{at}");
}

#[test]
fn unknown_field_with_suggestion() {
    let src = "initial: a\nstates:\n  a:\n    shell: make\n    on_sucess: { success: done }\n  done:\n    terminal: success\n";
    let (at, help) = only(src);
    assert_eq!(at, "5:5 unknown field `on_sucess`");
    assert_eq!(help.as_deref(), Some("did you mean `on`?"));
}

#[test]
fn unknown_top_level_field_with_suggestion() {
    let (at, help) = only("intial: a\nstates:\n  a: { terminal: success }\n");
    assert_eq!(at, "1:1 unknown field `intial`");
    assert_eq!(help.as_deref(), Some("did you mean `initial`?"));
}

#[test]
fn unknown_field_without_suggestion_lists_the_fields() {
    let (at, help) = only("banana: 1\n");
    assert_eq!(at, "1:1 unknown field `banana`");
    assert!(
        help.expect("help")
            .starts_with("expected one of `name`, `description`")
    );
}

#[test]
fn bad_duration() {
    let src = "initial: a\nlimits:\n  timeout: 5 parsecs\nstates:\n  a: { terminal: success }\n";
    let (at, _) = only(src);
    assert_eq!(
        at,
        "3:12 duration `5 parsecs` has an unknown unit `parsecs`: use ms, s, m, h or d"
    );
}

#[test]
fn zero_limit() {
    let (at, _) =
        only("initial: a\nlimits: { max_steps: 0 }\nstates:\n  a: { terminal: success }\n");
    assert_eq!(at, "2:22 must be greater than zero, got 0");
}

#[test]
fn negative_limit() {
    let (at, _) =
        only("initial: a\nlimits:\n  max_edge_visits: -3\nstates:\n  a: { terminal: success }\n");
    assert_eq!(at, "3:20 must be greater than zero, got -3");
}

#[test]
fn wrong_type() {
    let (at, _) = only("initial: a\nscope: src/\nstates:\n  a: { terminal: success }\n");
    assert_eq!(at, "2:8 expected a list, found the string `src/`");
}

#[test]
fn ten_megabyte_file_is_refused_fast() {
    let big = "a".repeat(10 * 1024 * 1024);
    // Refused by its size before any parsing (speed is a benchmark's business, not a test's).
    let found = problems(&big);
    assert_eq!(
        found,
        ["loop file is 10.0 MiB; loop files are limited to 1 MiB"]
    );
}

#[test]
fn alias_bomb_is_refused_fast() {
    let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = i - 1;
        src.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let (at, _) = only(&src);
    assert!(
        at.starts_with("5:") && at.contains("too many nodes after expanding aliases"),
        "{at}"
    );
}

#[test]
fn deep_nesting_is_refused() {
    let src = format!("initial: {}{}\n", "[".repeat(100), "]".repeat(100));
    let (at, _) = only(&src);
    assert_eq!(at, "1:73 lists and mappings nest deeper than 64 levels");
    let src = format!("initial: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let (at, _) = only(&src);
    assert!(at.contains("recursion limit exceeded"), "{at}");
}

#[test]
fn non_utf8() {
    let mut bytes = b"initial: a\nname: caf".to_vec();
    bytes.push(0xE9);
    bytes.extend_from_slice(b"\n");
    let (_, diags) = dloop_core::validate::check_loop(&bytes);
    assert_eq!(diags.len(), 1);
    assert_eq!(
        crate::located(&diags[0]),
        "2:10 file is not UTF-8: invalid byte 0xe9 at 2:10"
    );
}

#[test]
fn empty_files() {
    for src in ["", "  \n\n", "# just a comment\n", "---\n"] {
        assert_eq!(
            problems(src),
            ["file is empty: a loop needs `initial` and `states`"],
            "{src:?}"
        );
    }
}

#[test]
fn top_level_not_a_mapping() {
    let (at, _) = only("- a\n- b\n");
    assert_eq!(
        at,
        "1:1 a loop file must be a mapping of fields, found a list"
    );
}

#[test]
fn several_documents() {
    let (at, _) = only("initial: a\n---\ninitial: b\n");
    assert_eq!(
        at,
        "2:1 a loop file holds one YAML document, found a second"
    );
}

#[test]
fn duplicate_state() {
    let (at, help) =
        only("initial: a\nstates:\n  a: { terminal: success }\n  a: { terminal: failure }\n");
    assert_eq!(at, "4:3 duplicate key `a`");
    assert_eq!(help.as_deref(), Some("`a` is already set on line 3"));
}

#[test]
fn several_independent_errors_are_all_reported() {
    let src = "\
initial: test
limts: {}
states:
  test:
    shel: make
    timeout: 5 parsecs
    next: done
  fix:
    prompt: fix it
    retries: { max: -1 }
  done:
    terminal: sucess
";
    assert_eq!(
        problems(src),
        [
            "2:1 unknown field `limts`",
            "5:5 unknown field `shel`",
            "6:14 duration `5 parsecs` has an unknown unit `parsecs`: use ms, s, m, h or d",
            "10:21 expected a whole number from 0, found the number -1",
            "12:15 unknown value `sucess`",
        ]
    );
}

/// Large inputs built to hit the slow paths (many keys, duplicates, references, states, long
/// lists) are answered quickly. The bound is loose because tests run unoptimized on shared
/// machines; it catches quadratic work, which at these sizes would take minutes.
#[test]
fn large_adversarial_files_are_answered_quickly() {
    let states: String = (0..7_000)
        .map(|i| {
            format!(
                "  s{i}: {{ shell: \"${{context.x{i}}}\", next: s{} }}\n",
                i + 1
            )
        })
        .collect();
    let inputs = [
        (0..20_000)
            .map(|i| format!("k{i}: v\n"))
            .collect::<String>(),
        (0..20_000)
            .map(|i| format!("k{}: v\n", i % 10_000))
            .collect(),
        (0..60_000).map(|i| format!("k{i}: v\n")).collect(),
        format!("initial: [{}]\n", "1,".repeat(50_000)),
        format!("initial: s0\nstates:\n{states}"),
        format!(
            "initial: s\nstates:\n  s:\n    next: s\n    prompt: \"{}\"\n",
            "\\u0041${contxt.a} ".repeat(25_000)
        ),
    ];
    for input in &inputs {
        assert!(
            input.len() <= dloop_core::parse::MAX_FILE_BYTES,
            "{}",
            input.len()
        );
        let found = problems(input);
        assert!(!found.is_empty(), "{:?}...", &input[..40]);
    }
}
