//! Table tests of the lexer: the context at marked points of small scripts.

use super::ShellContext::{self, *};
use super::contexts;

/// The contexts at each `@` of `marked` (the `@`s are removed before lexing).
fn at_marks(marked: &str) -> Vec<ShellContext> {
    let mut script = Vec::new();
    let mut bounds = Vec::new();
    for &b in marked.as_bytes() {
        if b == b'@' {
            bounds.push(script.len());
        } else {
            script.push(b);
        }
    }
    contexts(&script, &bounds)
}

#[test]
fn context_table() {
    let cases: &[(&str, &[ShellContext])] = &[
        ("@", &[Word]),
        ("echo @ @x x@", &[Word, Word, Word]),
        ("echo \"got @\"", &[DoubleQuoted]),
        ("echo 'got @'", &[SingleQuoted]),
        ("echo $'got @ \\' @'", &[AnsiC, AnsiC]),
        ("echo $\"got @\"", &[DoubleQuoted]),
        ("X=@; Y=\"@\"", &[Word, DoubleQuoted]),
        (
            "echo \"a 'b' @\" '\"@\"' @",
            &[DoubleQuoted, SingleQuoted, Word],
        ),
        ("echo \"a \\\" @\"", &[DoubleQuoted]),
        ("echo 'a\\' @", &[Word]),
        // Command substitutions, in and out of quotes, nested.
        ("x=$(echo @)", &[Word]),
        (
            "x=\"$(echo @ \"@\" '@')\" @",
            &[Word, DoubleQuoted, SingleQuoted, Word],
        ),
        ("x=\"$(echo \"$(echo '@')\" @)\"", &[SingleQuoted, Word]),
        ("x=$( (echo @) ; echo @ ) @", &[Word, Word, Word]),
        ("x=`echo @ \"@\"` \"`echo @`\"", &[Word, DoubleQuoted, Word]),
        // bash's own `${...}` takes the quoting around it.
        (
            "echo ${V:-@} \"${V:-@}\" ${V:-'@'}",
            &[Word, DoubleQuoted, SingleQuoted],
        ),
        (
            "echo \"${V:-'@'}\" ${V:-{@}} @",
            &[DoubleQuoted, Word, Word],
        ),
        // Comments.
        ("# @\necho @ # @ \"\n@", &[Comment, Word, Comment, Word]),
        ("echo a#@ '#' @", &[Word, Word]),
        ("x=$(echo # @ )\n@)", &[Comment, Word]),
        ("#!/bin/bash\n@", &[Word]),
        // Arithmetic, also nested.
        ("echo $((1 + @)) @", &[Arithmetic, Word]),
        ("echo $(( (1) + @ )) @", &[Arithmetic, Word]),
        (
            "((n += @)); for ((i=0; i<@; i++)); do :; done",
            &[Arithmetic, Arithmetic],
        ),
        (
            "echo $[@] $(( $(echo @) )) \"$((@))\"",
            &[Arithmetic, Arithmetic, Arithmetic],
        ),
        ("echo $( (echo @) )", &[Word]),
        // Escapes.
        (
            "echo \\@ \\\\@ \"\\@\" \"\\\\@\"",
            &[Escaped, Word, Escaped, DoubleQuoted],
        ),
        ("echo \\@@", &[Escaped, Word]),
        ("echo '\\@'", &[SingleQuoted]),
    ];
    for (marked, expected) in cases {
        assert_eq!(&at_marks(marked), expected, "contexts in {marked:?}");
    }
}

#[test]
fn heredoc_table() {
    let cases: &[(&str, &[ShellContext])] = &[
        (
            "cat <<EOF\nhi @ \"@\" '@'\nEOF\n@",
            &[HeredocBody, HeredocBody, HeredocBody, Word],
        ),
        (
            "cat <<EOF > f; echo @\nbody @\nEOF\n@",
            &[Word, HeredocBody, Word],
        ),
        ("cat <<'EOF'\n@\nEOF\n@", &[QuotedHeredoc, Word]),
        ("cat <<\"EOF\"\n@\nEOF\n@", &[QuotedHeredoc, Word]),
        ("cat <<\\EOF\n@\nEOF\n@", &[QuotedHeredoc, Word]),
        ("cat <<E'O'F\n@\nEOF\n@", &[QuotedHeredoc, Word]),
        ("cat << EOF\n@\nEOF\n@", &[HeredocBody, Word]),
        // `<<-` strips leading tabs, also from the delimiter line.
        ("cat <<-EOF\n\t@\n\tEOF\n@", &[HeredocBody, Word]),
        // Without `-`, an indented delimiter does not end the body.
        (
            "cat <<EOF\n @\n EOF\n@\nEOF\n@",
            &[HeredocBody, HeredocBody, Word],
        ),
        // Two heredocs on one line: bodies in order.
        (
            "cat <<A <<'B'\n@\nA\n@\nB\n@",
            &[HeredocBody, QuotedHeredoc, Word],
        ),
        // Expansions inside an unquoted body.
        (
            "cat <<EOF\n$(echo @) ${V:-@} $((@))\nEOF",
            &[Word, HeredocBody, Arithmetic],
        ),
        // A heredoc inside a command substitution.
        ("x=$(cat <<EOF\n@\nEOF\n) @", &[HeredocBody, Word]),
        // A delimiter-like line with a reference in it is body.
        (
            "cat <<EOF\nEOF@\n@\nEOF\n@",
            &[HeredocBody, HeredocBody, Word],
        ),
        ("cat <<@\n", &[HeredocDelimiter]),
        ("cat <<E@F\nx\n", &[HeredocDelimiter]),
        // Here-strings are words.
        ("cat <<< @ <<<\"@\"", &[Word, DoubleQuoted]),
        // `<<` in arithmetic is a shift.
        ("echo $((1 << 2)) @", &[Word]),
        // An unterminated body runs to the end.
        ("cat <<EOF\n@", &[HeredocBody]),
        // A comment line does not start a heredoc; the newline after it does.
        ("cat <<EOF # @\n@\nEOF\n@", &[Comment, HeredocBody, Word]),
    ];
    for (marked, expected) in cases {
        assert_eq!(&at_marks(marked), expected, "contexts in {marked:?}");
    }
}

#[test]
fn several_references_at_one_point_and_past_the_end() {
    assert_eq!(contexts(b"echo \"", &[6, 6]), [DoubleQuoted, DoubleQuoted]);
    assert_eq!(contexts(b"echo", &[9]), [Word]);
    assert_eq!(contexts(b"", &[]), []);
}

#[test]
fn refused_contexts() {
    for c in [QuotedHeredoc, HeredocDelimiter, Arithmetic, Escaped] {
        assert!(c.is_refused(), "{c:?}");
    }
    for c in [
        Word,
        DoubleQuoted,
        SingleQuoted,
        AnsiC,
        HeredocBody,
        Comment,
    ] {
        assert!(!c.is_refused(), "{c:?}");
    }
}
