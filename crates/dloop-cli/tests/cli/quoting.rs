//! Interpolated values in shell actions, run by the real binary and bash: every quoting form an
//! author may write around `${...}` times every hostile payload. Data never runs (no marker
//! file appears) and arrives byte-exact (NUL bytes dropped). Forms that cannot be made safe are
//! refused by `dloop validate` with `file:line:col`.
//!
//! Payloads are real captured output: an earlier step `cat`s them from a fixture file.

use std::fs;

use crate::common::TestProject;

/// The marker an injected command would create, in the project root (the actions' cwd).
const MARKER: &str = "PWNED";

/// Each form writes the captured value to `out-N`; `suffix` is what the form adds after it.
struct Form {
    name: &'static str,
    shell: &'static str,
    suffix: &'static [u8],
}

const FORMS: &[Form] = &[
    Form {
        name: "bare",
        shell: "printf %s ${captured.p.output} > out-0",
        suffix: b"",
    },
    Form {
        name: "double quotes",
        shell: "printf %s \"${captured.p.output}\" > out-1",
        suffix: b"",
    },
    Form {
        name: "single quotes",
        shell: "printf %s '${captured.p.output}' > out-2",
        suffix: b"",
    },
    Form {
        name: "ANSI-C quotes",
        shell: "printf %s $'${captured.p.output}' > out-3",
        suffix: b"",
    },
    Form {
        name: "unquoted heredoc",
        shell: "cat <<EOF > out-4\n${captured.p.output}\nEOF",
        suffix: b"\n",
    },
    Form {
        name: "assignment",
        shell: "X=${captured.p.output}; printf %s \"$X\" > out-5",
        suffix: b"",
    },
    Form {
        name: "quoted assignment",
        shell: "X=\"${captured.p.output}\"; printf %s \"$X\" > out-6",
        suffix: b"",
    },
    // `$(...)` and backticks drop trailing newlines: the `x` keeps them.
    Form {
        name: "command substitution",
        shell: "printf %s \"$(printf %s ${captured.p.output}; printf x)\" > out-7",
        suffix: b"x",
    },
    Form {
        name: "backticks",
        shell: "printf %s \"`printf %s ${captured.p.output}; printf x`\" > out-8",
        suffix: b"x",
    },
];

/// A loop that captures `payload.bin` and runs every form on it, then succeeds.
fn matrix_loop() -> String {
    let mut text = String::from(
        "initial: emit\nstates:\n  emit:\n    shell: cat payload.bin\n    capture: p\n    next: form0\n",
    );
    for (i, form) in FORMS.iter().enumerate() {
        let next = if i + 1 == FORMS.len() {
            "done".to_owned()
        } else {
            format!("form{}", i + 1)
        };
        text.push_str(&format!("  form{i}:\n    shell: |\n"));
        for line in form.shell.lines() {
            text.push_str(&format!("      {line}\n"));
        }
        text.push_str(&format!("    next: {next}\n"));
    }
    text.push_str("  done:\n    terminal: success\n");
    text
}

/// Runs the matrix loop on `payload` and checks every form.
fn check_payload(name: &str, payload: &[u8]) {
    let p = TestProject::new();
    p.write_loop("quoting", &matrix_loop());
    fs::write(p.root().join("payload.bin"), payload).expect("write payload");
    let out = p.dloop(&["run", "quoting"]);
    assert_eq!(out.code, 0, "payload {name}: {}", out.render());
    assert!(
        !p.root().join(MARKER).exists(),
        "payload {name}: an injected command ran"
    );
    let value: Vec<u8> = payload.iter().copied().filter(|&b| b != 0).collect();
    let mut wrong = Vec::new();
    for (i, form) in FORMS.iter().enumerate() {
        let got = fs::read(p.root().join(format!("out-{i}"))).unwrap_or_default();
        let mut expected = value.clone();
        expected.extend_from_slice(form.suffix);
        if got != expected {
            wrong.push(format!(
                "{}: got {} bytes {:?}",
                form.name,
                got.len(),
                String::from_utf8_lossy(&got[..got.len().min(200)])
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "payload {name}: values not byte-exact:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn quoting_command_substitution() {
    check_payload("$(...)", b"$(touch PWNED)");
}

#[test]
fn quoting_backticks() {
    check_payload("backticks", b"`touch PWNED`");
}

#[test]
fn quoting_command_separators() {
    check_payload(
        "; && | &",
        b"a; touch PWNED; b && touch PWNED || touch PWNED | touch PWNED & touch PWNED",
    );
}

#[test]
fn quoting_both_quote_kinds() {
    check_payload(
        "quotes",
        b"' \"; touch PWNED; echo \" ' '$(touch PWNED)' \"$(touch PWNED)\" $'\\x41' $\"x\"",
    );
}

#[test]
fn quoting_backslashes() {
    check_payload(
        "backslashes",
        b"a\\b \\' \\\" \\$(touch PWNED) \\n \\x41 \\",
    );
}

#[test]
fn quoting_newlines_and_the_heredoc_delimiter() {
    check_payload("newlines", b"line1\nEOF\ntouch PWNED\n\n\tEOF\r\nlast\n\n");
}

#[test]
fn quoting_parameter_expansions() {
    check_payload(
        "${x}",
        b"${x} $HOME ${PWD:-$(touch PWNED)} ${__dloop_1} $1 $@",
    );
}

#[test]
fn quoting_glob_characters() {
    // Files a glob would match, so an unquoted expansion would change the value.
    check_payload("globs", b"* ? [ab] out-* .* {a,b} ~");
}

#[test]
fn quoting_leading_dash() {
    check_payload("leading -", b"-n -e --help");
}

#[test]
fn quoting_small_non_utf8_bytes() {
    // Under 4 KiB: whole (as text) in the log, and read back byte-exact from the output stream,
    // checked against the recorded SHA-256.
    check_payload(
        "small non-UTF-8",
        b"\xff\xfe\x80 \xc3\x28 $(touch PWNED) \xe2\x82 ok\n\x01\x7f",
    );
}

#[test]
fn quoting_non_utf8_bytes() {
    // Over 4 KiB: read back from the output stream, keeping the tail.
    let mut payload = Vec::new();
    while payload.len() < 6000 {
        payload.extend_from_slice(b"\xff\xfe\x80 \xc3\x28 $(touch PWNED) \xe2\x82 ok\n");
        payload.extend(1u8..=255);
    }
    check_payload("non-UTF-8", &payload);
}

#[test]
fn quoting_200_kb() {
    let chunk: &[u8] = b"$(touch PWNED) `touch PWNED` ; && | ' \" \\ ${x} *?[ -n\nEOF\n";
    let payload: Vec<u8> = chunk.iter().copied().cycle().take(200 * 1024).collect();
    check_payload("200 KB", &payload);
}

#[test]
fn quoting_nul_bytes_are_dropped_and_do_not_break_the_step() {
    check_payload("NUL", b"a\0b $(touch PWNED)\0\0c\n");
}

/// `dloop validate` on a loop whose one shell state runs `shell` (a block scalar at line 5).
fn validate_shell(shell: &str) -> crate::common::Output {
    let p = TestProject::new();
    let body: String = shell.lines().map(|l| format!("      {l}\n")).collect();
    p.write_loop(
        "bad",
        &format!(
            "initial: a\ncontext:\n  n: '1'\nstates:\n  a:\n    shell: |\n{body}    next: done\n  done:\n    terminal: success\n"
        ),
    );
    p.dloop(&["validate", "bad"])
}

#[test]
fn quoting_quoted_heredoc_is_refused_at_validation() {
    for opener in ["<<'EOF'", "<<\"EOF\"", "<<\\EOF"] {
        let out = validate_shell(&format!("cat {opener}\ngot ${{context.n}}\nEOF"));
        assert_eq!(out.code, 2, "{opener}: {}", out.render());
        let text = out.render();
        assert!(text.contains(".loops/bad.yaml:8:11"), "{text}");
        assert!(text.contains("quoted heredoc"), "{text}");
        assert!(text.contains("help: use an unquoted heredoc"), "{text}");
    }
}

#[test]
fn quoting_arithmetic_is_refused_at_validation() {
    for (shell, col) in [
        ("echo $(( ${context.n} + 1 ))", 16),
        ("(( ${context.n} > 0 )) && echo big", 10),
        ("echo $[ ${context.n} ]", 15),
    ] {
        let out = validate_shell(shell);
        assert_eq!(out.code, 2, "{shell}: {}", out.render());
        let text = out.render();
        assert!(text.contains(&format!(".loops/bad.yaml:7:{col}")), "{text}");
        assert!(text.contains("arithmetic"), "{text}");
        assert!(text.contains("check it is a number"), "{text}");
    }
}

#[test]
fn quoting_state_names_that_are_paths_are_refused_at_validation() {
    let p = TestProject::new();
    p.write_loop(
        "bad",
        "initial: \"../x\"\nstates:\n  \"../x\":\n    shell: 'true'\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["validate", "bad"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stderr.contains(".loops/bad.yaml:3:3") || out.stdout.contains(".loops/bad.yaml:3:3"),
        "{}",
        out.render()
    );
}
