//! Sub-loop checks across loop files: `loop:` names that do not exist, `with:` keys the called
//! loop never reads, and cycles of loops running each other.

use std::collections::{BTreeMap, HashSet, VecDeque};

use crate::diagnostic::{Diagnostic, suggest};
use crate::parse::ParsedLoop;

/// Sub-loop problems across loop files, each with the name of the loop whose file has it:
/// a `loop:` naming a loop that does not exist (with a suggestion), a `with:` key the called loop
/// neither declares (`context`, `required`, `input_key`) nor reads (a typo would otherwise pass
/// silently and the child use its default), and a loop whose `loop:` states reach itself,
/// directly or through other loops (reported at each such state).
pub fn check_subloop_cycles(loops: &[(String, &ParsedLoop)]) -> Vec<(String, Diagnostic)> {
    let graph: BTreeMap<&str, &ParsedLoop> = loops
        .iter()
        .map(|(name, parsed)| (name.as_str(), *parsed))
        .collect();
    let calls = |parsed: &'_ ParsedLoop| -> Vec<(String, String)> {
        parsed
            .def
            .states
            .iter()
            .filter_map(|(state, def)| def.sub_loop.clone().map(|target| (state.clone(), target)))
            .collect()
    };
    let mut found = Vec::new();
    for (name, parsed) in loops {
        for (state, target) in calls(parsed) {
            let span = parsed.spans.value(&["states", &state, "loop"]);
            if !graph.contains_key(target.as_str()) {
                let diag = Diagnostic::new(
                    span,
                    format!("state `{state}` runs loop `{target}`, which does not exist"),
                )
                .with_suggestion(suggest(&target, graph.keys().copied()));
                found.push((name.clone(), diag));
                continue;
            }
            found.extend(
                unread_bindings(parsed, &state, &target, graph[target.as_str()])
                    .into_iter()
                    .map(|diag| (name.clone(), diag)),
            );
            // Breadth-first from the called loop back to this one, keeping parents for the path.
            let mut parent: BTreeMap<String, String> = BTreeMap::new();
            let mut queue = VecDeque::from([target.clone()]);
            let mut seen: HashSet<String> = HashSet::from([target.clone()]);
            let mut closing = (target == *name).then(|| target.clone());
            while let Some(current) = queue.pop_front().filter(|_| closing.is_none()) {
                let Some(callee) = graph.get(current.as_str()) else {
                    continue;
                };
                for (_, next) in calls(callee) {
                    if next == *name {
                        closing = Some(current.clone());
                        break;
                    }
                    if seen.insert(next.clone()) {
                        parent.insert(next.clone(), current.clone());
                        queue.push_back(next);
                    }
                }
            }
            let Some(closing) = closing else { continue };
            // The path target -> ... -> closing, read back through the parents.
            let mut back = vec![closing];
            while let Some(p) = back.last().and_then(|last| parent.get(last)) {
                back.push(p.clone());
            }
            back.reverse();
            let mut chain = vec![name.clone()];
            if target != *name {
                chain.extend(back);
            }
            chain.push(name.clone());
            let path: Vec<String> = chain.iter().map(|c| format!("`{c}`")).collect();
            let diag = Diagnostic::new(span, format!("sub-loop cycle: {}", path.join(" -> ")))
                .with_help("a loop cannot run itself, directly or through other loops");
            found.push((name.clone(), diag));
        }
    }
    found
}

/// The `with:` keys of `state` (in `caller`) that loop `target` (`callee`) neither declares nor
/// reads in any `${context.KEY}`.
fn unread_bindings(
    caller: &ParsedLoop,
    state: &str,
    target: &str,
    callee: &ParsedLoop,
) -> Vec<Diagnostic> {
    let def = &callee.def;
    let mut known: Vec<String> = def.context.keys().cloned().collect();
    known.extend(def.required.iter().cloned());
    known.push(def.input_key().to_owned());
    known.extend(
        crate::interpolate::references(callee.spans.source())
            .into_iter()
            .filter(|r| r.namespace == crate::interpolate::Namespace::Context)
            .filter_map(|r| r.path.first().cloned()),
    );
    let Some(state_def) = caller.def.states.get(state) else {
        return Vec::new();
    };
    state_def
        .with
        .keys()
        .filter(|key| !known.contains(key))
        .map(|key| {
            let span = caller.spans.key(&["states", state, "with", key]);
            let diag = Diagnostic::new(
                span,
                format!("state `{state}` binds `with.{key}`, which loop `{target}` never reads"),
            )
            .with_help(format!(
                "a loop reads the context keys it declares (`context:`, `required:`, \
                 `input_key:`) or names in `${{context.KEY}}`; bind one of `{target}`'s"
            ));
            // A close key is the likelier fix: its "did you mean" replaces the general help.
            diag.with_suggestion(suggest(key, known.iter().map(String::as_str)))
        })
        .collect()
}
