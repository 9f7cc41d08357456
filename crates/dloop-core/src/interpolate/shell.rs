//! Rendering a template as a bash script in which values never pass through the shell parser,
//! and finding the references a script cannot take safely (for validation).
//!
//! # The rendered script
//!
//! ```text
//! __dloop_1=$'it\'s $(x)\x0a' __dloop_2=$'...';<the author's script, each reference replaced>
//! ```
//!
//! Each non-`:raw` reference gets its own variable `__dloop_N` (numbered in source order from
//! 1), bound on the first line with ANSI-C quoting, directly followed by the author's script on
//! the same line so that bash's "line N" messages keep the author's numbering (a leading `#!`
//! line becomes a comment). Inside `$'...'` every byte that is not printable ASCII is written
//! `\xHH`, and `\` and `'` are escaped, so the script text is pure ASCII and the value is
//! byte-exact in any locale. NUL bytes are dropped: a bash variable cannot hold one.
//!
//! At the reference's place goes a parameter expansion of its variable, in the form its lexical
//! context needs ([`reference_text`]): `"${__dloop_N}"` in an unquoted word, `${__dloop_N}` in
//! `"..."` and unquoted heredoc bodies, `'"${__dloop_N}"'` in `'...'`, `'"${__dloop_N}"$'` in
//! `$'...'`. Each form leaves the lexer in the context it found, so the text around it reads as
//! the author wrote it.
//!
//! # Why this is safe whatever the context analysis says
//!
//! The value is only ever in two places: inside `$'...'` on the first line, where every byte
//! that could end the quote or start an escape is itself escaped, and in a variable. The script
//! text names the variable, never the value; bash performs parameter expansion after parsing and
//! does not parse its result again as syntax (no `$(...)`, quotes, `;` or heredoc markers come
//! back to life). So if the lexer got a context wrong, the value could be word-split or globbed,
//! or arrive with quote characters around it, but it could not run. The exceptions are places
//! where bash itself evaluates an expanded value as code: arithmetic (refused here when written
//! directly; `let`, `declare -i`, `[[ $x -eq 1 ]]` and array subscripts are not detected), and
//! `eval`, `bash -c`, `ssh` given the value as code. Those are documented in the README.
//!
//! `:raw` values are code by the author's choice: they are inserted as text before lexing, so
//! the contexts after them follow the real script.

use std::fmt::Write as _;

use super::shell_lex::{self, ShellContext};
use super::{Part, RenderError, Template, VarRef, resolve};

/// The prefix of the variables that hold values; scripts should not use names starting with it.
pub const VAR_PREFIX: &str = "__dloop_";

/// A reference that cannot be used where it is written in a shell action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Byte offset of the reference's `$` in the template text.
    pub offset: usize,
    /// Byte length of the reference.
    pub len: usize,
    /// The reference as written (canonical form).
    pub reference: String,
    /// Where it sits.
    pub context: ShellContext,
    /// What is wrong, e.g. "`${x}` is inside arithmetic, ...".
    pub message: String,
    /// What to write instead.
    pub help: String,
}

/// Why a reference in `context` is refused, as (message tail, help); `None` when it is allowed.
pub fn refusal_reason(context: ShellContext) -> Option<(&'static str, &'static str)> {
    match context {
        ShellContext::QuotedHeredoc => Some((
            "is inside a quoted heredoc (`<<'EOF'`, `<<\"EOF\"` or `<<\\EOF`), where nothing expands, \
             so a value could only get in as text that may contain the delimiter",
            "use an unquoted heredoc (`<<EOF`), where the value is inserted as data, or \
             `printf '%s\\n' ${...}`",
        )),
        ShellContext::HeredocDelimiter => Some((
            "is a heredoc delimiter, which bash never expands",
            "write the delimiter as plain text (`<<EOF`) and put the value in the body",
        )),
        ShellContext::Arithmetic => Some((
            "is inside arithmetic (`$((...))`, `((...))` or `$[...]`), where bash evaluates the \
             value as an expression and `a[$(cmd)]` runs cmd",
            "bind it to a variable and check it is a number first: \
             `n=${...}; [[ $n =~ ^-?[0-9]+$ ]] || exit 2; echo $((n + 1))`",
        )),
        ShellContext::Escaped => Some((
            "follows a `\\` that would escape its first character",
            "write `$${` for a literal `${`, or `\\\\` for a backslash before the value",
        )),
        ShellContext::Word
        | ShellContext::DoubleQuoted
        | ShellContext::SingleQuoted
        | ShellContext::AnsiC
        | ShellContext::HeredocBody
        | ShellContext::Comment => None,
    }
}

/// The text that stands for variable `n` in `context`; `None` for refused contexts.
pub fn reference_text(n: usize, context: ShellContext) -> Option<String> {
    let name = format!("${{{VAR_PREFIX}{n}}}");
    Some(match context {
        ShellContext::Word => format!("\"{name}\""),
        ShellContext::DoubleQuoted | ShellContext::HeredocBody | ShellContext::Comment => name,
        ShellContext::SingleQuoted => format!("'\"{name}\"'"),
        ShellContext::AnsiC => format!("'\"{name}\"$'"),
        _ => return None,
    })
}

/// `value` as a bash ANSI-C quoted word (`$'...'`), pure ASCII, NUL bytes dropped.
pub fn ansi_c_quote(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    out.push_str("$'");
    for &b in value {
        match b {
            0 => {}
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                write!(out, "\\x{b:02x}").expect("writing to a String cannot fail");
            }
        }
    }
    out.push('\'');
    out
}

/// Renders `template` as a bash script (see the module docs), asking `lookup` for each
/// reference's value as bytes.
///
/// Missing values follow [`super::render`]'s rules (default, `?`, else
/// [`RenderError::Missing`]). A reference in a refused context gives
/// [`RenderError::Refused`]; validation reports those before a run starts, so this only happens
/// for a definition stored by an older version.
pub fn render_shell(
    template: &Template,
    lookup: &mut dyn FnMut(&VarRef) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, RenderError> {
    let mut script: Vec<u8> = Vec::new();
    let mut bounds = Vec::new();
    let mut bound: Vec<(&VarRef, Vec<u8>)> = Vec::new();
    for part in &template.parts {
        match part {
            Part::Literal(text) => script.extend_from_slice(text.as_bytes()),
            Part::Var(var) => {
                let value = resolve(var, lookup(var))?;
                if var.raw {
                    script.extend_from_slice(&value);
                } else {
                    bounds.push(script.len());
                    bound.push((var, value));
                }
            }
        }
    }
    let contexts = shell_lex::contexts(&script, &bounds);
    let mut out = Vec::with_capacity(script.len() + bound.iter().map(|b| b.1.len()).sum::<usize>());
    for (i, (_, value)) in bound.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(format!("{VAR_PREFIX}{}=", i + 1).as_bytes());
        out.extend_from_slice(ansi_c_quote(value).as_bytes());
    }
    if !bound.is_empty() {
        out.push(b';');
    }
    let mut last = 0;
    for (i, ((at, context), (var, _))) in bounds.iter().zip(&contexts).zip(&bound).enumerate() {
        out.extend_from_slice(&script[last..*at]);
        last = *at;
        let Some(text) = reference_text(i + 1, *context) else {
            let (message, help) = refusal_reason(*context).unwrap_or(("cannot be used here", ""));
            return Err(RenderError::Refused {
                reference: var.to_string(),
                reason: format!("{message}; {help}"),
            });
        };
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&script[last..]);
    Ok(out)
}

/// The references of shell action `text` that are in a refused context, in order. `:raw`
/// references are opaque here: never refused, and lexing does not look through them.
pub fn shell_refusals(text: &str) -> Vec<Refusal> {
    let template = super::parse_template(text);
    let mut script = String::new();
    let mut bounds = Vec::new();
    let mut vars = Vec::new();
    for part in &template.parts {
        match part {
            Part::Literal(text) => script.push_str(text),
            Part::Var(var) => {
                bounds.push(script.len());
                vars.push(var);
            }
        }
    }
    let contexts = shell_lex::contexts(script.as_bytes(), &bounds);
    vars.into_iter()
        .zip(contexts)
        .filter(|(var, _)| !var.raw)
        .filter_map(|(var, context)| {
            let (message, help) = refusal_reason(context)?;
            Some(Refusal {
                offset: var.offset,
                len: var.len,
                reference: var.to_string(),
                context,
                message: format!("`{var}` in a shell action {message}"),
                help: help.replace("${...}", &var.to_string()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::interpolate::parse_template;

    fn render_with(text: &str, values: &BTreeMap<&str, &[u8]>) -> Result<String, RenderError> {
        render_shell(&parse_template(text), &mut |var| {
            values.get(var.name().as_str()).map(|v| v.to_vec())
        })
        .map(|script| String::from_utf8(script).expect("ASCII script"))
    }

    /// Decodes the `$'...'` words of our bindings (only the escapes [`ansi_c_quote`] writes).
    fn decode_ansi_c(word: &str) -> Vec<u8> {
        let inner = word
            .strip_prefix("$'")
            .and_then(|w| w.strip_suffix('\''))
            .expect("an ANSI-C word");
        let bytes = inner.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => match bytes[i + 1] {
                    b'x' => {
                        let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).expect("hex");
                        out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                        i += 4;
                    }
                    other => {
                        out.push(other);
                        i += 2;
                    }
                },
                b'\'' => panic!("unescaped quote in {word:?}"),
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }

    /// The bindings of a rendered script's first line, decoded, and the rest of the script.
    fn split_bindings(script: &str) -> (Vec<Vec<u8>>, &str) {
        let mut values = Vec::new();
        let mut rest = script;
        let mut n = 1;
        loop {
            let prefix = format!("{VAR_PREFIX}{n}=$'");
            let Some(body) = rest.strip_prefix(&prefix) else {
                assert_eq!(n, 1, "binding {n} missing in {script:?}");
                return (values, rest);
            };
            // The word ends at the first `'` not escaped by a `\`.
            let mut escaped = false;
            let close = body
                .char_indices()
                .find(|&(_, c)| {
                    let end = !escaped && c == '\'';
                    escaped = !escaped && c == '\\';
                    end
                })
                .expect("closing quote")
                .0;
            values.push(decode_ansi_c(&format!("$'{}", &body[..=close])));
            rest = &body[close + 1..];
            n += 1;
            match rest.as_bytes().first() {
                Some(b' ') => rest = &rest[1..],
                Some(b';') => return (values, &rest[1..]),
                _ => panic!("bindings end without `;` in {script:?}"),
            }
        }
    }

    #[test]
    fn each_context_gets_its_form() {
        let values = BTreeMap::from([("context.v", b"a b".as_slice())]);
        let cases = [
            ("echo ${context.v}", "echo \"${__dloop_1}\""),
            ("echo \"got ${context.v}!\"", "echo \"got ${__dloop_1}!\""),
            ("echo 'got ${context.v}!'", "echo 'got '\"${__dloop_1}\"'!'"),
            (
                "echo $'got ${context.v}\\n'",
                "echo $'got '\"${__dloop_1}\"$'\\n'",
            ),
            ("X=${context.v}", "X=\"${__dloop_1}\""),
            ("X=\"${context.v}\"", "X=\"${__dloop_1}\""),
            ("x=$(echo ${context.v})", "x=$(echo \"${__dloop_1}\")"),
            ("x=`echo ${context.v}`", "x=`echo \"${__dloop_1}\"`"),
            (
                "cat <<EOF\n${context.v}\nEOF",
                "cat <<EOF\n${__dloop_1}\nEOF",
            ),
            ("# ${context.v}", "# ${__dloop_1}"),
            ("echo ${V:-${context.v}}", "echo ${V:-\"${__dloop_1}\"}"),
        ];
        for (text, body) in cases {
            let script = render_with(text, &values).expect("renders");
            assert_eq!(
                script,
                format!("__dloop_1=$'a b';{body}"),
                "rendering {text:?}"
            );
        }
    }

    #[test]
    fn values_are_bound_once_each_in_order_byte_exact() {
        let values = BTreeMap::from([
            (
                "context.a",
                b"$(touch x) `id` ; && | ' \" \\ ${x} *?[ -n".as_slice(),
            ),
            (
                "context.b",
                b"line1\nline2\ttab\r\x7f\xff\xfe\x00end".as_slice(),
            ),
        ]);
        let script = render_with(
            "printf %s ${context.a} \"${context.b}\" ${context.a}",
            &values,
        )
        .expect("renders");
        assert!(script.is_ascii(), "{script:?}");
        let (bound, rest) = split_bindings(&script);
        assert_eq!(
            bound,
            [
                values["context.a"].to_vec(),
                b"line1\nline2\ttab\r\x7f\xff\xfeend".to_vec(),
                values["context.a"].to_vec(),
            ]
        );
        assert_eq!(
            rest,
            "printf %s \"${__dloop_1}\" \"${__dloop_2}\" \"${__dloop_3}\""
        );
        assert!(!script.contains('\n'), "bindings stay on the first line");
    }

    #[test]
    fn no_references_leave_the_script_alone() {
        let values = BTreeMap::new();
        assert_eq!(
            render_with("echo hi\nexit 3", &values),
            Ok("echo hi\nexit 3".into())
        );
        assert_eq!(
            render_with("echo $${context.x} ${HOME}", &values),
            Ok("echo ${context.x} ${HOME}".into())
        );
    }

    #[test]
    fn raw_values_are_code_and_are_lexed_through() {
        let values = BTreeMap::from([
            ("context.open", b"echo '".as_slice()),
            ("context.v", b"it's".as_slice()),
            ("context.cmd", b"echo $((1+1))".as_slice()),
        ]);
        // The raw value opens a single quote, so the reference after it is inside one.
        assert_eq!(
            render_with("${context.open:raw}${context.v}'", &values),
            Ok("__dloop_1=$'it\\'s';echo ''\"${__dloop_1}\"''".into())
        );
        assert_eq!(
            render_with("${context.cmd:raw}; echo ${context.v}", &values),
            Ok("__dloop_1=$'it\\'s';echo $((1+1)); echo \"${__dloop_1}\"".into())
        );
    }

    #[test]
    fn refused_contexts_fail_to_render() {
        let values = BTreeMap::from([("context.v", b"1".as_slice())]);
        for text in [
            "echo $((${context.v} + 1))",
            "cat <<'EOF'\n${context.v}\nEOF",
            "cat <<${context.v}\nx\n",
            "echo \\${context.v}",
        ] {
            match render_with(text, &values) {
                Err(RenderError::Refused { reference, reason }) => {
                    assert_eq!(reference, "${context.v}");
                    assert!(!reason.is_empty());
                }
                other => panic!("{text:?} rendered as {other:?}"),
            }
        }
    }

    #[test]
    fn refusals_point_at_the_reference_and_skip_raw() {
        let text = "echo ${context.ok}\ncat <<'EOF'\n${captured.a.output}\nEOF\n\
                    echo $(( ${context.n:raw} + ${context.n} ))";
        let found: Vec<(&str, ShellContext)> = shell_refusals(text)
            .iter()
            .map(|r| (&text[r.offset..r.offset + r.len], r.context))
            .collect();
        assert_eq!(
            found,
            [
                ("${captured.a.output}", ShellContext::QuotedHeredoc),
                ("${context.n}", ShellContext::Arithmetic),
            ]
        );
        let first = &shell_refusals(text)[0];
        assert!(
            first.message.contains("quoted heredoc"),
            "{}",
            first.message
        );
        assert!(
            first.help.contains("printf '%s\\n' ${captured.a.output}"),
            "{}",
            first.help
        );
    }

    #[test]
    fn ansi_c_quote_table() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "$''"),
            (b"plain text", "$'plain text'"),
            (b"it's \\", "$'it\\'s \\\\'"),
            (b"a\nb\t\x1b", "$'a\\x0ab\\x09\\x1b'"),
            (b"\x00\xff\xc3\xa9", "$'\\xff\\xc3\\xa9'"),
            (b"\x7f~ ", "$'\\x7f~ '"),
        ];
        for (value, expected) in cases {
            assert_eq!(ansi_c_quote(value), expected, "quoting {value:?}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_in_any_context_bind_exactly(
            value in proptest::collection::vec(any::<u8>(), 0..200),
            form in 0usize..8,
        ) {
            let text = [
                "printf %s ${context.v} > out",
                "printf %s \"${context.v}\" > out",
                "printf %s '${context.v}' > out",
                "printf %s $'${context.v}' > out",
                "cat <<EOF > out\n${context.v}\nEOF",
                "X=${context.v}; printf %s \"$X\" > out",
                "printf %s \"$(printf %s ${context.v})\" > out",
                "printf %s `printf %s \"${context.v}\"` > out",
            ][form];
            let values = BTreeMap::from([("context.v", value.as_slice())]);
            let script = render_with(text, &values).expect("renders");
            prop_assert!(script.is_ascii());
            let (bound, rest) = split_bindings(&script);
            let expected: Vec<u8> = value.iter().copied().filter(|&b| b != 0).collect();
            prop_assert_eq!(bound, vec![expected]);
            prop_assert_eq!(rest.matches("${__dloop_").count(), 1);
            prop_assert!(!rest.contains("__dloop_2"));
        }
    }
}
