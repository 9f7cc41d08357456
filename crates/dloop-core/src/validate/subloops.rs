//! Sub-loop checks across loop files: `loop:` names that do not exist, and cycles of loops
//! running each other.

use std::collections::{BTreeMap, HashSet, VecDeque};

use crate::diagnostic::{Diagnostic, suggest};
use crate::parse::ParsedLoop;

/// Sub-loop problems across loop files, each with the name of the loop whose file has it:
/// a `loop:` naming a loop that does not exist (with a suggestion), and a loop whose `loop:`
/// states reach itself, directly or through other loops (reported at each such state).
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
