//! Rewrites little-loops `${...}` references into dloop's spelling, and names the ones dloop
//! has no equivalent for.

/// A reference the importer could not translate, and what to do about it.
pub(crate) struct Untranslated {
    /// The reference as written (`${messages.last(3)}`).
    pub(crate) reference: String,
    /// What to do.
    pub(crate) advice: &'static str,
}

/// Translates every `${...}` in `text`. In shell actions (`shell == true`) little-loops
/// substitutes values raw, so each reference gets `:raw` to keep the command's meaning, except
/// a `:shell` one, which dloop's default quoting already covers. `$${` (a literal) is kept.
pub(crate) fn translate(text: &str, shell: bool) -> (String, Vec<Untranslated>) {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        // `$${` is little-loops' (and dloop's) escape for a literal `${`.
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at + 2]);
            rest = &rest[at + 2..];
            continue;
        }
        let Some(len) = rest[at..].find('}') else {
            break;
        };
        out.push_str(&rest[..at]);
        let inner = &rest[at + 2..at + len];
        out.push_str(&translate_one(inner, shell, &mut problems));
        rest = &rest[at + len + 1..];
    }
    out.push_str(rest);
    (out, problems)
}

fn translate_one(inner: &str, shell: bool, problems: &mut Vec<Untranslated>) -> String {
    let original = format!("${{{inner}}}");
    // A reference without a dot is bash's own `${VAR}` to little-loops' docs an error; to dloop
    // it passes through untouched, as it did in the shell.
    if !inner.contains('.') {
        return original;
    }
    let (path, suffix) = split_suffix(inner);
    let (path, quoted) = match suffix {
        Suffix::Shell => (path, true),
        _ => (path, false),
    };
    let mapped = match map_path(path) {
        Ok(p) => p,
        Err(advice) => {
            problems.push(Untranslated {
                reference: original,
                advice,
            });
            // Written as a literal (`$${`) so the loop still validates; the note says what to do.
            return format!("$${{{inner}}}");
        }
    };
    let suffix_text = match suffix {
        Suffix::Default(value) => format!(":default={value}"),
        Suffix::Optional => "?".to_owned(),
        Suffix::Shell | Suffix::None => String::new(),
    };
    let raw = if shell && !quoted { ":raw" } else { "" };
    // `?` ends a reference in dloop, after `:raw`.
    match suffix {
        Suffix::Optional => format!("${{{mapped}{raw}?}}"),
        _ => format!("${{{mapped}{raw}{suffix_text}}}"),
    }
}

enum Suffix<'a> {
    None,
    Default(&'a str),
    Optional,
    Shell,
}

fn split_suffix(inner: &str) -> (&str, Suffix<'_>) {
    if let Some((path, value)) = inner.split_once(":default=") {
        return (path, Suffix::Default(value));
    }
    if let Some(path) = inner.strip_suffix(":shell") {
        return (path, Suffix::Shell);
    }
    if let Some(path) = inner.strip_suffix('?') {
        return (path, Suffix::Optional);
    }
    (inner, Suffix::None)
}

/// little-loops namespace path → dloop's, or advice when there is none.
fn map_path(path: &str) -> Result<String, &'static str> {
    let (ns, rest) = path.split_once('.').unwrap_or((path, ""));
    match (ns, rest) {
        ("context", "run_dir") => Ok("run.dir".to_owned()),
        ("context", "max_steps" | "input_hash" | "max_iterations") => {
            Err("little-loops injects this context key; dloop does not: add it to `context:`")
        }
        ("context" | "env", _) => Ok(path.to_owned()),
        ("captured", _) => {
            let field = rest.rsplit('.').next().unwrap_or("");
            if matches!(field, "failure_type" | "timeout_kind") {
                Err(
                    "dloop captures have no failure_type/timeout_kind: read `exit_code` or the verdict",
                )
            } else {
                Ok(path.to_owned())
            }
        }
        ("prev", "timeout_kind") => {
            Err("dloop has no prev.timeout_kind: route the `error` verdict")
        }
        ("prev", _) => Ok(path.to_owned()),
        ("state", "iteration") => Ok("state.visit".to_owned()),
        ("state", "name") => Ok(path.to_owned()),
        ("loop", "name") => Ok("run.loop".to_owned()),
        ("loop", "elapsed_ms") => Ok("run.elapsed_ms".to_owned()),
        ("loop", _) => Err("dloop has run.elapsed_ms and run.loop only: rewrite with those"),
        ("messages", _) => {
            Err("dloop has no shared message log: capture the states whose output you need")
        }
        ("param", _) => Err("fragments are not imported: inline the fragment's action"),
        ("result", _) => {
            Err("route targets cannot be computed in dloop: write one route per verdict")
        }
        _ => Err("unknown namespace: rewrite with context, captured, prev, state, run or env"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_renamed_and_shell_ones_kept_raw() {
        let (text, problems) = translate(
            "cd ${context.run_dir} && echo ${captured.x.output:shell} $${HOME} ${HOME}",
            true,
        );
        assert_eq!(
            text,
            "cd ${run.dir:raw} && echo ${captured.x.output} $${HOME} ${HOME}"
        );
        assert!(problems.is_empty());
        let (text, _) = translate(
            "n=${state.iteration} ${context.a:default=b} ${prev.output?}",
            false,
        );
        assert_eq!(
            text,
            "n=${state.visit} ${context.a:default=b} ${prev.output?}"
        );
        let (text, problems) = translate("${messages.last(3)} ${param.x}", false);
        assert_eq!(text, "$${messages.last(3)} $${param.x}");
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].reference, "${messages.last(3)}");
    }
}
