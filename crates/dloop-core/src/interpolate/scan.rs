//! The reference scanner: splits loop text into literals and `${namespace.path...}`
//! references (syntax in the parent module's doc), and reports text that looks like a
//! reference but is malformed.
//!
//! Invariants: scanning never fails and never panics; anything that is not a well-formed
//! reference stays literal byte for byte; bash's own `${VAR...}` forms are never taken.

use super::{Malformed, Namespace, Part, Template, VarRef};

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
    use proptest::prelude::*;

    use super::super::*;

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

    proptest! {
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
