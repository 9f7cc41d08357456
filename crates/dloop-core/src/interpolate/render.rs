//! Rendering a parsed template with a lookup: verbatim for prompts, or through
//! [`render_shell`] for shell actions; and the missing-value rules every renderer shares.
//!
//! Invariant: a missing value is its default, else empty with `?`, else
//! [`RenderError::Missing`]; no renderer decides otherwise ([`resolve`] is the one place).

use super::{Part, Quoting, RenderError, Template, VarRef, render_shell};

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::*;

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
}
