//! Quoting a value as one POSIX shell word, for display (commands dloop prints for a human to
//! copy). Rendering shell actions does not use it: see the `shell` module.
//!
//! Invariant: [`shell_quote`] reads back as exactly its input under POSIX word rules
//! (property-tested below).

/// Characters that never need quoting in a bash word.
fn is_bare_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | ':' | '=' | '@' | '%' | '+' | '-')
}

/// Quotes `value` as one POSIX shell word that reads back as exactly `value`, for display
/// (rendering shell actions does not use it: see [`shell`](super::shell)).
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::*;
    use super::is_bare_safe;

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
    }
}
