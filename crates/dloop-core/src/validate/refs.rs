//! The `${namespace.path}` references of an interpolated string, found with the rules of the
//! interpolation syntax, and the checks of what each reference names.
//!
//! Kept apart so it can be swapped for `crate::interpolate`'s own parser: the rules are the
//! same (`$${` is a literal, anything that is not `${ident.seg...}` passes through).

use crate::diagnostic::suggest;

/// The interpolation namespaces.
pub(crate) const NAMESPACES: &[&str] = &["context", "captured", "prev", "state", "run", "env"];
/// The fields of `${captured.NAME.FIELD}`.
pub(crate) const CAPTURED_FIELDS: &[&str] =
    &["output", "stderr", "exit_code", "verdict", "duration_ms"];
/// The fields of `${prev.FIELD}`.
pub(crate) const PREV_FIELDS: &[&str] = &["output", "exit_code", "state", "verdict"];
/// The fields of `${state.FIELD}`.
pub(crate) const STATE_FIELDS: &[&str] = &["name", "visit"];
/// The fields of `${run.FIELD}`.
pub(crate) const RUN_FIELDS: &[&str] = &["id", "iteration", "dir", "elapsed_ms", "loop"];

/// One `${namespace.path}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference<'a> {
    /// Byte offset of the `$` in the string.
    pub(crate) start: usize,
    /// The whole reference, `${` to `}`.
    pub(crate) text: &'a str,
    /// The namespace.
    pub(crate) namespace: &'a str,
    /// The dot-separated path after the namespace.
    pub(crate) path: Vec<&'a str>,
    /// Whether a missing value is allowed (`?` or `:default=`).
    pub(crate) optional: bool,
}

/// Every reference in `text`, in order.
pub(crate) fn references(text: &str) -> Vec<Reference<'_>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'$' && bytes.get(i + 2) == Some(&b'{') {
            i += 3;
            continue;
        }
        if bytes[i] == b'$'
            && bytes[i + 1] == b'{'
            && let Some(reference) = reference_at(text, i)
        {
            i += reference.text.len();
            found.push(reference);
            continue;
        }
        i += 1;
    }
    found
}

/// The reference starting at the `${` at `start`, if it is one.
fn reference_at(text: &str, start: usize) -> Option<Reference<'_>> {
    let body_start = start + 2;
    let rest = &text[body_start..];
    let ident_len = rest
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if ident_len == 0 {
        return None;
    }
    let namespace = &rest[..ident_len];
    let mut pos = ident_len;
    let mut path = Vec::new();
    while rest[pos..].starts_with('.') {
        let seg = &rest[pos + 1..];
        let len = seg
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(seg.len());
        if len == 0 {
            return None;
        }
        path.push(&seg[..len]);
        pos += 1 + len;
    }
    if path.is_empty() {
        return None;
    }
    let mut optional = false;
    loop {
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix(":raw") {
            pos = rest.len() - after.len();
        } else if let Some(after) = tail.strip_prefix(":default=") {
            optional = true;
            let end = after.find('}')?;
            pos = rest.len() - after.len() + end;
        } else {
            break;
        }
    }
    if rest[pos..].starts_with('?') {
        optional = true;
        pos += 1;
    }
    if !rest[pos..].starts_with('}') {
        return None;
    }
    let end = body_start + pos + 1;
    Some(Reference {
        start,
        text: &text[start..end],
        namespace,
        path,
        optional,
    })
}

/// What the loop defines that references may name.
pub(crate) struct Known<'a> {
    /// Context keys: `context`, `required` and the input key.
    pub(crate) context: Vec<&'a str>,
    /// Capture names of all states.
    pub(crate) captures: Vec<&'a str>,
}

/// Why `reference` names nothing, as a message and a help line.
pub(crate) fn check(reference: &Reference<'_>, known: &Known<'_>) -> Option<(String, String)> {
    let r = reference.text;
    let fields_help = |fields: &[&str], word: &str| match suggest(word, fields.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("use one of {}", list(fields)),
    };
    let one_field = |fields: &[&str]| -> Option<(String, String)> {
        match reference.path.as_slice() {
            [field] if fields.contains(field) => None,
            [field] => Some((
                format!(
                    "`{r}` names no field `{field}` of `{}`",
                    reference.namespace
                ),
                fields_help(fields, field),
            )),
            _ => Some((
                format!("`{r}` takes one field after `{}.`", reference.namespace),
                format!("use one of {}", list(fields)),
            )),
        }
    };
    match reference.namespace {
        "context" => match reference.path.as_slice() {
            [key] if reference.optional || known.context.contains(key) => None,
            [key] => Some((
                format!("`{r}` names context key `{key}`, which is not defined"),
                match suggest(key, known.context.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "add `{key}` under `context:` (a default) or to `required:` (given with --context at run time)"
                    ),
                },
            )),
            _ => Some((
                format!("`{r}` names a context key with dots; context keys are flat"),
                "write `${context.KEY}`".to_owned(),
            )),
        },
        "captured" => match reference.path.as_slice() {
            [name, ..] if !known.captures.contains(name) => Some((
                format!("`{r}` names capture `{name}`, which no state defines"),
                match suggest(name, known.captures.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("add `capture: {name}` to the state whose result this is"),
                },
            )),
            [_, field] if CAPTURED_FIELDS.contains(field) => None,
            [_, field] => Some((
                format!("`{r}` names no field `{field}` of a capture"),
                fields_help(CAPTURED_FIELDS, field),
            )),
            _ => Some((
                format!("`{r}` needs exactly one field after the capture's name"),
                format!("use one of {}", list(CAPTURED_FIELDS)),
            )),
        },
        "prev" => one_field(PREV_FIELDS),
        "state" => one_field(STATE_FIELDS),
        "run" => one_field(RUN_FIELDS),
        "env" if reference.path.len() == 1 => None,
        "env" => Some((
            format!("`{r}` names an environment variable with dots"),
            "write `${env.NAME}`".to_owned(),
        )),
        other => Some((
            format!("unknown interpolation namespace `{other}` in `{r}`"),
            match suggest(other, NAMESPACES.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "namespaces are {}; write `$${{` for a literal `${{`",
                    list(NAMESPACES)
                ),
            },
        )),
    }
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references_and_passes_others_through() {
        let text = "a ${context.x} $${context.y} ${VAR} ${VAR:-x} ${#a[@]} ${run.id:raw} \
                    ${captured.t.output?} ${context.z:default=a b} ${ctx.a-b.c}";
        let found: Vec<(&str, &str, Vec<&str>, bool)> = references(text)
            .into_iter()
            .map(|r| (r.text, r.namespace, r.path, r.optional))
            .collect();
        assert_eq!(
            found,
            [
                ("${context.x}", "context", vec!["x"], false),
                ("${run.id:raw}", "run", vec!["id"], false),
                (
                    "${captured.t.output?}",
                    "captured",
                    vec!["t", "output"],
                    true
                ),
                ("${context.z:default=a b}", "context", vec!["z"], true),
                ("${ctx.a-b.c}", "ctx", vec!["a-b", "c"], false),
            ]
        );
        assert_eq!(references("${context.x")[..], []);
        assert_eq!(references("$")[..], []);
        assert_eq!(references("é${é.x}${a.é}")[..], []);
    }
}
