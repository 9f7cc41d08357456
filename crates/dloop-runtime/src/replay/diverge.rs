//! A divergence: where a replay left the record and why, in words a user can act on.
//!
//! A replay key is a hash, so it says only *that* a call differs. What differs is worked out
//! from what both sides still have: the two definitions' text of the state (the command or
//! prompt template, the agent settings), and for a prompt the prompt as the source sent it
//! (kept as a blob) against the prompt as the replay would send it. A shell command is not
//! stored rendered, so when its template is unchanged the difference is in an interpolated
//! value. Lines quoted are cut to [`QUOTE`] characters.

use std::collections::{BTreeMap, BTreeSet};

use dloop_core::model::{LoopDef, StateDef};

/// The most characters of a line quoted in a reason.
const QUOTE: usize = 80;

/// Why a replay left the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DivergenceKind {
    /// A different state at this step (different routing, or a changed `initial`).
    State,
    /// The same state, but its command or prompt (or agent call) differs.
    Input,
    /// The `llm` judge would be asked something else (its criteria changed).
    Judge,
    /// The recorded run has no result to reuse here: it ended, paused or was stopped earlier.
    EndOfRecord,
    /// Every step matched, but the replay ended otherwise than the recorded run.
    End,
}

impl DivergenceKind {
    /// The kind as `--json` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::Input => "input",
            Self::Judge => "judge",
            Self::EndOfRecord => "end_of_record",
            Self::End => "end",
        }
    }
}

/// The first step at which a replay could not reuse the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The step.
    pub step: u64,
    /// The state the replay was in.
    pub state: String,
    /// What kind of difference.
    pub kind: DivergenceKind,
    /// A sentence saying what differs.
    pub reason: String,
}

/// Why the replay key of state `state`'s action differs from the recorded one. `recorded` is
/// the prompt the source sent (prompt states), `now` the rendered bytes of this call.
pub(crate) fn explain_input(
    source: Option<&LoopDef>,
    def: &LoopDef,
    state: &str,
    recorded: Option<&[u8]>,
    now: &[u8],
) -> String {
    let new = def.states.get(state);
    let old = source.and_then(|d| d.states.get(state));
    if let (Some(old), Some(new)) = (old, new) {
        if old.shell != new.shell {
            return changed("command", old.shell.as_deref(), new.shell.as_deref());
        }
        if old.prompt != new.prompt {
            return changed("prompt", old.prompt.as_deref(), new.prompt.as_deref());
        }
        if let Some(what) = agent_change(source, def, old, new) {
            return format!("the agent call changed ({what})");
        }
    }
    if let Some(recorded) = recorded {
        let recorded = String::from_utf8_lossy(recorded);
        let now = String::from_utf8_lossy(now);
        if recorded != now {
            return format!(
                "the prompt as sent differs (an interpolated value changed): {}",
                first_difference(&recorded, &now)
            );
        }
    }
    "the rendered command differs: an interpolated value (context, a capture, the \
     environment) changed"
        .to_owned()
}

/// Why the replay key of state `state`'s `loop:` call differs from the recorded one: the loop
/// it names, or the first `with:` key whose template (in the definitions) or rendered value
/// (`now`, the call as JSON, against `recorded`, the context the recorded child started with)
/// differs.
pub(crate) fn explain_call(
    source: Option<&LoopDef>,
    def: &LoopDef,
    state: &str,
    recorded: Option<&BTreeMap<String, String>>,
    now: &[u8],
) -> String {
    let new = def.states.get(state);
    let old = source.and_then(|d| d.states.get(state));
    if let (Some(old), Some(new)) = (old, new) {
        if old.sub_loop != new.sub_loop {
            return changed("sub-loop", old.sub_loop.as_deref(), new.sub_loop.as_deref());
        }
        let keys: BTreeSet<&String> = old.with.keys().chain(new.with.keys()).collect();
        for key in keys {
            let (a, b) = (old.with.get(key), new.with.get(key));
            if a.map(|v| &v.0) != b.map(|v| &v.0) {
                return match (a, b) {
                    (Some(a), Some(b)) => {
                        format!("`with.{key}` changed: {}", first_difference(&a.0, &b.0))
                    }
                    (None, _) => format!("`with.{key}` was added"),
                    (_, None) => format!("`with.{key}` was removed"),
                };
            }
        }
    }
    let call: Option<serde_json::Value> = serde_json::from_slice(now).ok();
    let with = call
        .as_ref()
        .and_then(|c| c.get("with"))
        .and_then(serde_json::Value::as_object);
    if let (Some(with), Some(recorded)) = (with, recorded) {
        for (key, value) in with {
            let value = value.as_str().unwrap_or_default();
            let before = recorded.get(key).map_or("", String::as_str);
            if before != value {
                return format!(
                    "`with.{key}` differs (an interpolated value changed): {}",
                    first_difference(before, value)
                );
            }
        }
    }
    "the sub-loop call differs: a `with:` value (context, a capture) changed".to_owned()
}

/// Which agent settings of a state differ between the two definitions.
fn agent_change(
    source: Option<&LoopDef>,
    def: &LoopDef,
    old: &StateDef,
    new: &StateDef,
) -> Option<String> {
    let old_runner = old
        .runner
        .clone()
        .or_else(|| source.and_then(|d| d.runner.clone()));
    let new_runner = new.runner.clone().or_else(|| def.runner.clone());
    let mut what = Vec::new();
    if old_runner != new_runner {
        what.push("runner");
    }
    if old.model != new.model {
        what.push("model");
    }
    if old.args != new.args {
        what.push("args");
    }
    if old.max_turns != new.max_turns {
        what.push("max_turns");
    }
    (!what.is_empty()).then(|| what.join(", "))
}

fn changed(what: &str, old: Option<&str>, new: Option<&str>) -> String {
    match (old, new) {
        (Some(old), Some(new)) => format!("the {what} changed: {}", first_difference(old, new)),
        (None, Some(_)) => format!("the state now has a {what} action"),
        (Some(_), None) | (None, None) => format!("the state no longer has a {what} action"),
    }
}

/// The first line that differs between `old` and `new`: `line N: `old` → `new``, each cut to
/// [`QUOTE`] characters around the first character that differs.
pub(crate) fn first_difference(old: &str, new: &str) -> String {
    let mut old_lines = old.lines();
    let mut new_lines = new.lines();
    let mut n = 1;
    loop {
        match (old_lines.next(), new_lines.next()) {
            (Some(a), Some(b)) if a == b => n += 1,
            (None, None) => return "only in line endings or trailing space".to_owned(),
            (a, b) => {
                let same = match (a, b) {
                    (Some(a), Some(b)) => {
                        a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
                    }
                    _ => 0,
                };
                return format!("line {n}: {} → {}", quote(a, same), quote(b, same));
            }
        }
    }
}

/// `line` in backticks, cut to [`QUOTE`] characters showing the one at `from` (with some
/// context before it), `…` marking what was cut.
fn quote(line: Option<&str>, from: usize) -> String {
    let Some(line) = line else {
        return "(no line)".to_owned();
    };
    let chars: Vec<char> = line.chars().collect();
    let start = if chars.len() <= QUOTE {
        0
    } else {
        from.saturating_sub(QUOTE / 4).min(chars.len() - QUOTE)
    };
    let end = (start + QUOTE).min(chars.len());
    let mut cut: String = chars[start..end].iter().collect();
    if start > 0 {
        cut.insert(0, '…');
    }
    if end < chars.len() {
        cut.push('…');
    }
    format!("`{cut}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> LoopDef {
        dloop_core::parse::parse_loop(text.as_bytes())
            .expect("parses")
            .def
    }

    #[test]
    fn first_difference_names_the_line_and_bounds_it() {
        assert_eq!(first_difference("a\nb\nc", "a\nB\nc"), "line 2: `b` → `B`");
        assert_eq!(
            first_difference("a", "a\nmore"),
            "line 2: (no line) → `more`"
        );
        let long = "x".repeat(200);
        let text = first_difference(&long, "y");
        assert!(text.len() < 200, "{text}");
        assert!(text.contains('…'), "{text}");
        // A difference far into a long line is shown, not cut off.
        let old = format!("{}old{}", "p".repeat(150), "s".repeat(150));
        let new = format!("{}new{}", "p".repeat(150), "s".repeat(150));
        let text = first_difference(&old, &new);
        assert!(text.contains("pold") && text.contains("pnew"), "{text}");
    }

    #[test]
    fn a_changed_command_is_quoted_from_the_definitions() {
        let old = parse(
            "initial: a\nstates:\n  a:\n    shell: echo one\n    next: done\n  done:\n    terminal: success\n",
        );
        let new = parse(
            "initial: a\nstates:\n  a:\n    shell: echo two\n    next: done\n  done:\n    terminal: success\n",
        );
        let why = explain_input(Some(&old), &new, "a", None, b"echo two");
        assert_eq!(why, "the command changed: line 1: `echo one` → `echo two`");
        let why = explain_input(Some(&old), &old, "a", None, b"echo one");
        assert!(why.contains("interpolated value"), "{why}");
        let why = explain_input(Some(&old), &old, "a", Some(b"fix x"), b"fix y");
        assert!(why.contains("line 1: `fix x` → `fix y`"), "{why}");
    }

    #[test]
    fn a_sub_loop_call_names_the_loop_or_the_with_key_that_changed() {
        let def = |child: &str, with: &str| {
            parse(&format!(
                "initial: a\nstates:\n  a:\n    loop: {child}\n    with:\n{with}    next: done\n  done:\n    terminal: success\n"
            ))
        };
        let old = def("child", "      x: one\n      y: ${context.k}\n");
        let why = explain_call(
            Some(&old),
            &def("other", "      x: one\n      y: ${context.k}\n"),
            "a",
            None,
            b"{}",
        );
        assert_eq!(why, "the sub-loop changed: line 1: `child` → `other`");
        let why = explain_call(
            Some(&old),
            &def("child", "      x: two\n      y: ${context.k}\n"),
            "a",
            None,
            b"{}",
        );
        assert_eq!(why, "`with.x` changed: line 1: `one` → `two`");
        let why = explain_call(
            Some(&old),
            &def("child", "      y: ${context.k}\n"),
            "a",
            None,
            b"{}",
        );
        assert_eq!(why, "`with.x` was removed");
        // Same templates: the rendered values against the recorded child's context.
        let recorded = BTreeMap::from([
            ("x".to_owned(), "one".to_owned()),
            ("y".to_owned(), "old".to_owned()),
        ]);
        let now = br#"{"loop":"child","with":{"x":"one","y":"new"}}"#;
        let why = explain_call(Some(&old), &old, "a", Some(&recorded), now);
        assert_eq!(
            why,
            "`with.y` differs (an interpolated value changed): line 1: `old` → `new`"
        );
        let why = explain_call(Some(&old), &old, "a", None, now);
        assert!(why.contains("a `with:` value"), "{why}");
    }
}
