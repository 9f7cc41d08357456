//! Interpolation: parsing `${namespace.path}` references in loop text and rendering them with
//! a lookup: verbatim for prompts, as a safe bash script for shell actions ([`shell`]).
//!
//! Invariants: parsing never fails (text that is not a well-formed reference stays literal, byte
//! for byte). In a rendered shell action no value that is not `:raw` ever passes through the
//! shell parser: values are bound to variables with ANSI-C quoting before the author's script,
//! and the reference becomes a parameter expansion in the form its lexical context needs
//! ([`shell_lex`] finds the context). Agent output can therefore never become shell syntax, and
//! it arrives byte-exact (NUL bytes dropped). See [`shell`] for the argument.
//!
//! | where `${x}` is written | what replaces it |
//! |---|---|
//! | unquoted word, `X=${x}`, `$(...)`, backticks | `"${__dloop_N}"` |
//! | `"..."`, `X="${x}"`, unquoted heredoc body | `${__dloop_N}` |
//! | `'...'` | `'"${__dloop_N}"'` |
//! | `$'...'` | `'"${__dloop_N}"$'` |
//! | quoted heredoc body, heredoc delimiter, arithmetic, after a lone `\` | refused at validation |
//!
//! # Syntax
//!
//! ```text
//! ${namespace.seg[.seg...][:raw][:default=VALUE[:raw]]}
//! ${namespace.seg[.seg...][:raw]?}
//! $${                          a literal `${` (the text after it is not a reference)
//! ```
//!
//! - `namespace` is `[A-Za-z_][A-Za-z0-9_]*`; each path segment is `[A-Za-z0-9_-]+`.
//! - `:raw` inserts the value without shell quoting.
//! - `:default=VALUE` is used when the value is missing. VALUE runs to the first `}`, so it
//!   cannot contain `}` (nor `${`: defaults are literal text, never nested references).
//! - Order rule: `:raw` may come before `:default=` (`${context.x:raw:default=a b}`) or at the
//!   very end of the default value (`${context.x:default=a b:raw}`); both mean the same. A
//!   default value therefore cannot itself end in `:raw`.
//! - `?` directly before `}` makes a missing value empty. It is only a suffix when there is no
//!   default (a `?` at the end of a default value is part of the value).
//!
//! Text that starts like `${` but has no `namespace.` prefix is bash's own syntax and passes
//! through untouched: `${VAR}`, `${VAR:-x}`, `${#arr[@]}`, `${arr[0]}`. Text that has the
//! `${namespace.` prefix is ours: with an unknown namespace it is still a reference (with
//! [`Namespace::Unknown`], so validation can report it), and when the rest is malformed
//! (`${context.x:bogus}`, unterminated `${context.x`) it stays literal and [`malformed`] reports
//! it. No valid bash expansion starts with `${name.`, so nothing of bash's is taken by mistake.

pub mod shell;
pub mod shell_lex;

use std::fmt;

use thiserror::Error;

pub use shell::{Refusal, render_shell, shell_refusals};
pub use shell_lex::ShellContext;

/// The namespace of a reference: the part before the first dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// `context`: the run's context values.
    Context,
    /// `captured`: results kept with `capture:` (`captured.NAME.output|stderr|...`).
    Captured,
    /// `prev`: the previous step (`output|exit_code|state|verdict`).
    Prev,
    /// `state`: the current state (`name|visit`).
    State,
    /// `run`: the run (`id|iteration|dir|elapsed_ms|loop`).
    Run,
    /// `env`: the environment of the dloop process.
    Env,
    /// Any other name; a reference with it never has a value and validation reports it.
    Unknown(String),
}

impl Namespace {
    /// The namespace for `name`; names other than the six known ones give [`Namespace::Unknown`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "context" => Self::Context,
            "captured" => Self::Captured,
            "prev" => Self::Prev,
            "state" => Self::State,
            "run" => Self::Run,
            "env" => Self::Env,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The name as written in templates.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Context => "context",
            Self::Captured => "captured",
            Self::Prev => "prev",
            Self::State => "state",
            Self::Run => "run",
            Self::Env => "env",
            Self::Unknown(name) => name,
        }
    }

    /// Whether this is one of the six namespaces dloop knows.
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Unknown(_))
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `${namespace.path...}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRef {
    /// The namespace.
    pub namespace: Namespace,
    /// The dot-separated segments after the namespace (at least one).
    pub path: Vec<String>,
    /// `:raw`: insert the value as code, not as data.
    pub raw: bool,
    /// `:default=VALUE`: the value used when the lookup has none.
    pub default: Option<String>,
    /// `?`: a missing value is empty instead of an error.
    pub optional: bool,
    /// Byte offset of the `$` in the template text.
    pub offset: usize,
    /// Byte length of the whole reference, from `$` to `}` inclusive.
    pub len: usize,
}

impl VarRef {
    /// `namespace.seg.seg`, without `${}` or suffixes.
    pub fn name(&self) -> String {
        let mut name = self.namespace.as_str().to_owned();
        for segment in &self.path {
            name.push('.');
            name.push_str(segment);
        }
        name
    }
}

/// Writes the reference in its canonical form (`${ns.path[:raw][:default=V][?]}`), which is how
/// it was written unless the source put `:raw` after the default.
impl fmt::Display for VarRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${{{}", self.name())?;
        if self.raw {
            f.write_str(":raw")?;
        }
        if let Some(default) = &self.default {
            write!(f, ":default={default}")?;
        }
        if self.optional {
            f.write_str("?")?;
        }
        f.write_str("}")
    }
}

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as is (with `$${` already turned into `${`).
    Literal(String),
    /// A reference replaced by its value.
    Var(VarRef),
}

/// A parsed template: literals and references in source order. Adjacent literals are merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    /// The parts, in order.
    pub parts: Vec<Part>,
}

impl Template {
    /// The references of the template, in order.
    pub fn references(&self) -> impl Iterator<Item = &VarRef> {
        self.parts.iter().filter_map(|part| match part {
            Part::Var(var) => Some(var),
            Part::Literal(_) => None,
        })
    }
}

/// Something that starts like one of our references (`${name.`) but is not well formed; it is
/// left in the text literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Byte offset of the `$`.
    pub offset: usize,
    /// Byte length of the suspicious text (to the closing `}`, or to the end of the text).
    pub len: usize,
    /// What is wrong and what would be accepted.
    pub message: String,
}

/// How values are inserted when rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// Shell actions: the result is the script [`render_shell`] builds (values bound to
    /// variables, never parsed as code) unless `:raw`.
    Shell,
    /// Prompts and other text: values are inserted as they are.
    Verbatim,
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A reference has no value, no `:default=` and no `?`.
    #[error(
        "no value for `{reference}`: supply it, or write `:default=VALUE` or `?` to allow a missing value"
    )]
    Missing {
        /// The reference as written, e.g. `${captured.tests.output}`.
        reference: String,
    },
    /// A reference sits where no value can be inserted safely in a shell action (a quoted
    /// heredoc, arithmetic, ...). Validation refuses such loops; this is for stored old ones.
    #[error("`{reference}` cannot be interpolated where it is: it {reason}")]
    Refused {
        /// The reference as written.
        reference: String,
        /// Where it is and what to write instead.
        reason: String,
    },
}

/// Parses `text` into literals and references. Never fails: anything that is not a well-formed
/// reference stays literal.
pub fn parse_template(text: &str) -> Template {
    scan(text).0
}

/// The references in `text`, in order (including those with an unknown namespace).
pub fn references(text: &str) -> Vec<VarRef> {
    scan(text)
        .0
        .parts
        .into_iter()
        .filter_map(|part| match part {
            Part::Var(var) => Some(var),
            Part::Literal(_) => None,
        })
        .collect()
}

/// Text in `text` that starts like a reference (`${name.`) but is malformed and so stays
/// literal, e.g. `${context.x:bogus}` or an unterminated `${context.x`. Validation reports these:
/// passed to bash they would fail with "bad substitution".
pub fn malformed(text: &str) -> Vec<Malformed> {
    scan(text).1
}

/// Renders `template`, asking `lookup` for each reference's value.
///
/// A missing value (lookup gives `None`) uses the default, else is empty with `?`, else fails
/// with [`RenderError::Missing`]. With [`Quoting::Verbatim`] values are inserted as they are.
/// With [`Quoting::Shell`] the result is [`render_shell`]'s script (which is UTF-8 here because
/// the values are); use [`render_shell`] directly for values that are bytes.
pub fn render(
    template: &Template,
    quoting: Quoting,
    lookup: &mut dyn FnMut(&VarRef) -> Option<String>,
) -> Result<String, RenderError> {
    if quoting == Quoting::Shell {
        let script = render_shell(template, &mut |var| lookup(var).map(String::into_bytes))?;
        return Ok(String::from_utf8(script)
            .expect("literals and values are UTF-8 and the bindings are ASCII"));
    }
    let mut out = String::new();
    for part in &template.parts {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Var(var) => match lookup(var) {
                Some(value) => out.push_str(&value),
                None => out.push_str(
                    &String::from_utf8(resolve(var, None)?)
                        .expect("defaults are UTF-8 text of the template"),
                ),
            },
        }
    }
    Ok(out)
}

/// The value of `var` given what the lookup found: the found value, else the default, else
/// empty with `?`, else [`RenderError::Missing`].
pub(crate) fn resolve(var: &VarRef, found: Option<Vec<u8>>) -> Result<Vec<u8>, RenderError> {
    match (found, &var.default, var.optional) {
        (Some(value), _, _) => Ok(value),
        (None, Some(default), _) => Ok(default.clone().into_bytes()),
        (None, None, true) => Ok(Vec::new()),
        (None, None, false) => Err(RenderError::Missing {
            reference: var.to_string(),
        }),
    }
}

/// Characters that never need quoting in a bash word.
fn is_bare_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | ':' | '=' | '@' | '%' | '+' | '-')
}

/// Quotes `value` as one POSIX shell word that reads back as exactly `value`, for display
/// (rendering shell actions does not use it: see [`shell`]).
///
/// Words made only of `[A-Za-z0-9_./:=@%+-]` stay bare; the empty string is `''`; anything else
/// is single-quoted, with each `'` written as `'\''` (`it's` -> `'it'\''s'`).
pub fn shell_quote(value: &str) -> String {
    if !value.is_empty() && value.chars().all(is_bare_safe) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The one scanner behind [`parse_template`], [`references`] and [`malformed`].
fn scan(text: &str) -> (Template, Vec<Malformed>) {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut problems = Vec::new();
    let mut literal = String::new();
    // `start` is where the pending literal run begins; `i` is the scan position. Both only ever
    // sit on ASCII bytes (`$`) or at the ends, so slicing is always on char boundaries.
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes[i..].starts_with(b"$${") {
            literal.push_str(&text[start..i]);
            literal.push_str("${");
            i += 3;
            start = i;
            continue;
        }
        if !bytes[i..].starts_with(b"${") {
            i += 1;
            continue;
        }
        match parse_reference(text, i) {
            Candidate::NotOurs => i += 1,
            Candidate::Malformed(problem) => {
                problems.push(problem);
                i += 1;
            }
            Candidate::Ref(var) => {
                literal.push_str(&text[start..i]);
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                i += var.len;
                start = i;
                parts.push(Part::Var(var));
            }
        }
    }
    literal.push_str(&text[start..]);
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    (Template { parts }, problems)
}

enum Candidate {
    /// Not `${name.`: bash's syntax, or plain text.
    NotOurs,
    /// `${name.` followed by something that is not a reference.
    Malformed(Malformed),
    /// A well-formed reference.
    Ref(VarRef),
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_segment(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Parses the reference whose `$` is at `offset` (the caller checked `${` is there).
fn parse_reference(text: &str, offset: usize) -> Candidate {
    let bytes = text.as_bytes();
    let mut j = offset + 2;
    let ns_start = j;
    if !bytes.get(j).is_some_and(|&b| is_ident_start(b)) {
        return Candidate::NotOurs;
    }
    while bytes.get(j).is_some_and(|&b| is_ident(b)) {
        j += 1;
    }
    let ns_end = j;
    if bytes.get(j) != Some(&b'.') {
        return Candidate::NotOurs;
    }
    // From here on the text is ours: `${name.` is never valid bash.
    let bad = |message: String| {
        let len = match text[offset..].find('}') {
            Some(close) => close + 1,
            None => text.len() - offset,
        };
        Candidate::Malformed(Malformed {
            offset,
            len,
            message,
        })
    };
    let mut path = Vec::new();
    while bytes.get(j) == Some(&b'.') {
        j += 1;
        let seg_start = j;
        while bytes.get(j).is_some_and(|&b| is_segment(b)) {
            j += 1;
        }
        if j == seg_start {
            return bad(
                "empty or invalid path segment: segments are letters, digits, `_` and `-`".into(),
            );
        }
        path.push(text[seg_start..j].to_owned());
    }
    let mut raw = false;
    let mut default = None;
    let mut optional = false;
    loop {
        let rest = &text[j..];
        if rest.starts_with(":raw") && matches!(bytes.get(j + 4), Some(b':' | b'?' | b'}')) {
            raw = true;
            j += 4;
        } else if let Some(value_and_more) = rest.strip_prefix(":default=") {
            let Some(close) = value_and_more.find('}') else {
                return bad("unterminated reference: add the closing `}`".into());
            };
            let mut value = &value_and_more[..close];
            if value.contains("${") {
                return bad("a default value cannot contain a reference (`${`)".into());
            }
            if let Some(stripped) = value.strip_suffix(":raw") {
                raw = true;
                value = stripped;
            }
            default = Some(value.to_owned());
            j += ":default=".len() + close;
            break;
        } else if rest.starts_with("?}") {
            optional = true;
            j += 1;
            break;
        } else {
            break;
        }
    }
    match bytes.get(j) {
        Some(b'}') => {}
        None => return bad("unterminated reference: add the closing `}`".into()),
        Some(_) => {
            return bad(
                "unexpected text in reference: the suffixes are `:raw`, `:default=VALUE` and `?`"
                    .into(),
            );
        }
    }
    Candidate::Ref(VarRef {
        namespace: Namespace::from_name(&text[ns_start..ns_end]),
        path,
        raw,
        default,
        optional,
        offset,
        len: j + 1 - offset,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn var(ns: Namespace, path: &[&str]) -> VarRef {
        VarRef {
            namespace: ns,
            path: path.iter().map(|s| s.to_string()).collect(),
            raw: false,
            default: None,
            optional: false,
            offset: 0,
            len: 0,
        }
    }

    fn lit(text: &str) -> Part {
        Part::Literal(text.to_owned())
    }

    /// Parses, and checks the offsets and lengths point at the reference text.
    fn parse_checked(text: &str) -> Template {
        let template = parse_template(text);
        for var in template.references() {
            let written = &text[var.offset..var.offset + var.len];
            assert!(
                written.starts_with("${") && written.ends_with('}'),
                "{written}"
            );
        }
        template
    }

    #[test]
    fn parse_table() {
        let with = |f: &dyn Fn(&mut VarRef), ns: Namespace, path: &[&str], off, len| {
            let mut v = var(ns, path);
            v.offset = off;
            v.len = len;
            f(&mut v);
            Part::Var(v)
        };
        let none = |_: &mut VarRef| {};
        let cases: Vec<(&str, Vec<Part>)> = vec![
            ("", vec![]),
            ("plain text", vec![lit("plain text")]),
            (
                "${context.x}",
                vec![with(&none, Namespace::Context, &["x"], 0, 12)],
            ),
            (
                "a ${captured.tests.output} b",
                vec![
                    lit("a "),
                    with(&none, Namespace::Captured, &["tests", "output"], 2, 24),
                    lit(" b"),
                ],
            ),
            (
                "${prev.exit_code}",
                vec![with(&none, Namespace::Prev, &["exit_code"], 0, 17)],
            ),
            (
                "${state.visit}",
                vec![with(&none, Namespace::State, &["visit"], 0, 14)],
            ),
            (
                "${run.id}",
                vec![with(&none, Namespace::Run, &["id"], 0, 9)],
            ),
            (
                "${env.HOME}",
                vec![with(&none, Namespace::Env, &["HOME"], 0, 11)],
            ),
            (
                "${context.my-key_2}",
                vec![with(&none, Namespace::Context, &["my-key_2"], 0, 19)],
            ),
            (
                "${contxt.x}",
                vec![with(
                    &none,
                    Namespace::Unknown("contxt".into()),
                    &["x"],
                    0,
                    11,
                )],
            ),
            (
                "${context.x:raw}",
                vec![with(&|v| v.raw = true, Namespace::Context, &["x"], 0, 16)],
            ),
            (
                "${context.x:default=a b}",
                vec![with(
                    &|v| v.default = Some("a b".into()),
                    Namespace::Context,
                    &["x"],
                    0,
                    24,
                )],
            ),
            (
                "${context.x:default=}",
                vec![with(
                    &|v| v.default = Some("".into()),
                    Namespace::Context,
                    &["x"],
                    0,
                    21,
                )],
            ),
            (
                "${context.x:raw:default=a b}",
                vec![with(
                    &|v| {
                        v.raw = true;
                        v.default = Some("a b".into());
                    },
                    Namespace::Context,
                    &["x"],
                    0,
                    28,
                )],
            ),
            (
                "${context.x:default=a b:raw}",
                vec![with(
                    &|v| {
                        v.raw = true;
                        v.default = Some("a b".into());
                    },
                    Namespace::Context,
                    &["x"],
                    0,
                    28,
                )],
            ),
            (
                "${context.x:default=a:b=c?}",
                vec![with(
                    &|v| v.default = Some("a:b=c?".into()),
                    Namespace::Context,
                    &["x"],
                    0,
                    27,
                )],
            ),
            (
                "${context.x?}",
                vec![with(
                    &|v| v.optional = true,
                    Namespace::Context,
                    &["x"],
                    0,
                    13,
                )],
            ),
            (
                "${context.x:raw?}",
                vec![with(
                    &|v| {
                        v.raw = true;
                        v.optional = true;
                    },
                    Namespace::Context,
                    &["x"],
                    0,
                    17,
                )],
            ),
            // `$${` is a literal `${`, and what follows is not parsed.
            ("$${context.x}", vec![lit("${context.x}")]),
            ("a $${b} c", vec![lit("a ${b} c")]),
            ("$$ and $1 and $", vec![lit("$$ and $1 and $")]),
            // bash's own forms pass through.
            ("${VAR}", vec![lit("${VAR}")]),
            ("${VAR:-x}", vec![lit("${VAR:-x}")]),
            ("${#arr[@]}", vec![lit("${#arr[@]}")]),
            ("${arr[0]}", vec![lit("${arr[0]}")]),
            ("${!ref}", vec![lit("${!ref}")]),
            ("${1}", vec![lit("${1}")]),
            ("${}", vec![lit("${}")]),
            // Malformed references of ours stay literal.
            ("${context.x", vec![lit("${context.x")]),
            ("${context.x:bogus}", vec![lit("${context.x:bogus}")]),
            ("${context.}", vec![lit("${context.}")]),
            ("${context.x?:raw}", vec![lit("${context.x?:raw}")]),
            ("${context.x:default=a", vec![lit("${context.x:default=a")]),
            // Nested braces: the inner reference is found, the outer text stays.
            (
                "${VAR:-${context.x}}",
                vec![
                    lit("${VAR:-"),
                    with(&none, Namespace::Context, &["x"], 7, 12),
                    lit("}"),
                ],
            ),
            ("${context.${x}}", vec![lit("${context.${x}}")]),
            (
                "${context.x:default=${context.y}}",
                vec![
                    lit("${context.x:default="),
                    with(&none, Namespace::Context, &["y"], 20, 12),
                    lit("}"),
                ],
            ),
            // Unicode around and inside defaults.
            (
                "héllo ${context.x:default=ünï}✓",
                vec![
                    lit("héllo "),
                    with(
                        &|v| v.default = Some("ünï".into()),
                        Namespace::Context,
                        &["x"],
                        7,
                        26,
                    ),
                    lit("✓"),
                ],
            ),
            ("${context.ü}", vec![lit("${context.ü}")]),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_checked(text).parts, expected, "parsing {text:?}");
        }
    }

    #[test]
    fn malformed_table() {
        let cases: &[(&str, &[(usize, usize)])] = &[
            ("${context.x}", &[]),
            ("${VAR:-x} ${#a[@]}", &[]),
            ("${contxt.x}", &[]),
            ("${context.x", &[(0, 11)]),
            ("ab ${context.x:bogus} ${context.y}", &[(3, 18)]),
            ("${context.}", &[(0, 11)]),
            ("${context.x:default=${context.y}}", &[(0, 32)]),
        ];
        for (text, expected) in cases {
            let got: Vec<(usize, usize)> =
                malformed(text).iter().map(|m| (m.offset, m.len)).collect();
            assert_eq!(&got, expected, "malformed in {text:?}");
        }
    }

    #[test]
    fn references_lists_every_reference() {
        let names: Vec<String> =
            references("${context.a} ${VAR} ${run.id:raw} $${context.no} ${nope.x?}")
                .iter()
                .map(VarRef::name)
                .collect();
        assert_eq!(names, ["context.a", "run.id", "nope.x"]);
    }

    fn values() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([
            ("context.x", "hello world"),
            ("context.safe", "src/main.rs"),
            ("context.empty", ""),
            ("captured.t.output", "it's"),
        ])
    }

    fn render_with(text: &str, quoting: Quoting) -> Result<String, RenderError> {
        let values = values();
        render(&parse_template(text), quoting, &mut |v| {
            values.get(v.name().as_str()).map(|s| s.to_string())
        })
    }

    #[test]
    fn render_table() {
        use Quoting::{Shell, Verbatim};
        let ok = |s: &str| Ok(s.to_owned());
        let cases: Vec<(&str, Quoting, Result<String, RenderError>)> = vec![
            (
                "echo ${context.x}",
                Shell,
                ok("__dloop_1=$'hello world';echo \"${__dloop_1}\""),
            ),
            ("echo ${context.x}", Verbatim, ok("echo hello world")),
            ("echo ${context.x:raw}", Shell, ok("echo hello world")),
            (
                "cat ${context.safe}",
                Shell,
                ok("__dloop_1=$'src/main.rs';cat \"${__dloop_1}\""),
            ),
            (
                "[ -z ${context.empty} ]",
                Shell,
                ok("__dloop_1=$'';[ -z \"${__dloop_1}\" ]"),
            ),
            (
                "echo ${captured.t.output}",
                Shell,
                ok("__dloop_1=$'it\\'s';echo \"${__dloop_1}\""),
            ),
            (
                "echo ${context.nope:default=a b}",
                Shell,
                ok("__dloop_1=$'a b';echo \"${__dloop_1}\""),
            ),
            (
                "echo ${context.nope:raw:default=a b}",
                Shell,
                ok("echo a b"),
            ),
            (
                "echo ${context.nope:default=a b:raw}",
                Shell,
                ok("echo a b"),
            ),
            ("echo ${context.nope:default=a b}", Verbatim, ok("echo a b")),
            (
                "echo ${context.x:default=zzz}",
                Verbatim,
                ok("echo hello world"),
            ),
            (
                "echo ${context.nope?}",
                Shell,
                ok("__dloop_1=$'';echo \"${__dloop_1}\""),
            ),
            ("echo ${context.nope:raw?}", Shell, ok("echo ")),
            ("echo ${context.nope?}", Verbatim, ok("echo ")),
            (
                "echo $${context.x} ${VAR:-y}",
                Shell,
                ok("echo ${context.x} ${VAR:-y}"),
            ),
            (
                "echo ${captured.tests.output}",
                Verbatim,
                Err(RenderError::Missing {
                    reference: "${captured.tests.output}".into(),
                }),
            ),
            (
                "echo ${contxt.x:raw}",
                Shell,
                Err(RenderError::Missing {
                    reference: "${contxt.x:raw}".into(),
                }),
            ),
        ];
        for (text, quoting, expected) in cases {
            assert_eq!(
                render_with(text, quoting),
                expected,
                "rendering {text:?} ({quoting:?})"
            );
        }
    }

    #[test]
    fn shell_quote_table() {
        let cases = [
            ("", "''"),
            ("plain", "plain"),
            ("src/a-b_c.rs", "src/a-b_c.rs"),
            ("--flag=1", "--flag=1"),
            ("a b", "'a b'"),
            ("it's", "'it'\\''s'"),
            ("$(touch pwned)", "'$(touch pwned)'"),
            ("`id`", "'`id`'"),
            ("; rm -rf /", "'; rm -rf /'"),
            ("' quotes \"", "''\\'' quotes \"'"),
            ("a\nb", "'a\nb'"),
            ("$HOME", "'$HOME'"),
            ("*", "'*'"),
            ("~", "'~'"),
            ("{a,b}", "'{a,b}'"),
            ("ünï", "'ünï'"),
        ];
        for (value, expected) in cases {
            assert_eq!(shell_quote(value), expected, "quoting {value:?}");
        }
    }

    /// A tiny POSIX unquoter for one word: single quotes, backslash escapes and bare safe
    /// characters. Anything else outside single quotes (`$`, backticks, `;`, `|`, `&`, `(`,
    /// whitespace, newlines, globs) is an error, which is what the property checks.
    fn unquote(word: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = word.chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => out.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                },
                '\\' => match chars.next() {
                    Some(c) => out.push(c),
                    None => return Err("trailing backslash".into()),
                },
                c if is_bare_safe(c) => out.push(c),
                c => return Err(format!("unquoted {c:?}")),
            }
        }
        Ok(out)
    }

    proptest! {
        #[test]
        fn shell_quote_round_trips(value in any::<String>()) {
            prop_assert_eq!(unquote(&shell_quote(&value)), Ok(value));
        }

        #[test]
        fn shell_quote_round_trips_shell_soup(value in "[ -~\n\t\r'\"`$;|&()<>\\\\]*") {
            prop_assert_eq!(unquote(&shell_quote(&value)), Ok(value));
        }

        #[test]
        fn parse_never_panics_and_keeps_text(text in "([a-z. ]|\\$|\\{|\\}|:raw|:default=|\\?|context|\\$\\{)*") {
            let template = parse_template(&text);
            // Without `$${`, literals plus references as written give back the source.
            if !text.contains("$${") {
                let mut rebuilt = String::new();
                for part in &template.parts {
                    match part {
                        Part::Literal(s) => rebuilt.push_str(s),
                        Part::Var(v) => rebuilt.push_str(&text[v.offset..v.offset + v.len]),
                    }
                }
                prop_assert_eq!(rebuilt, text.clone());
            }
            let _ = malformed(&text);
        }
    }
}
