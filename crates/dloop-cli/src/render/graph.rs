//! The loop as a graph: arrows in plain text, a Mermaid `stateDiagram-v2`, or a Graphviz
//! digraph. Edges are the routes as written (`on:` keys, `next`, `retries.on_exhausted`).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use dloop_core::model::{LoopDef, Terminal};

/// The state the run starts in: `initial`, else none.
fn initial(def: &LoopDef) -> Option<&str> {
    def.initial.as_deref()
}

/// Mermaid state ids must be words; other names get a sanitized id and a `state "name" as id`
/// line. Ids are unique even when two names sanitize alike.
fn mermaid_ids(def: &LoopDef) -> HashMap<&str, String> {
    let mut used = BTreeSet::new();
    let mut ids = HashMap::new();
    for name in def.states.keys() {
        let base: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = if base.is_empty() {
            "state".to_owned()
        } else {
            base
        };
        let mut id = base.clone();
        let mut n = 2;
        while !used.insert(id.clone()) {
            id = format!("{base}_{n}");
            n += 1;
        }
        ids.insert(name.as_str(), id);
    }
    ids
}

/// A Mermaid `stateDiagram-v2`: `[*] --> initial`, `a --> b : verdict` per route, and
/// `terminal --> [*]`. Edges to states that do not exist are drawn too (validation reports them).
pub(crate) fn mermaid(def: &LoopDef) -> String {
    let ids = mermaid_ids(def);
    let id = |name: &str| -> String {
        ids.get(name).cloned().unwrap_or_else(|| {
            name.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
    };
    let mut out = String::from("stateDiagram-v2\n");
    for name in def.states.keys() {
        if id(name) != *name {
            let _ = writeln!(
                out,
                "    state \"{}\" as {}",
                name.replace('"', "'"),
                id(name)
            );
        }
    }
    if let Some(first) = initial(def) {
        let _ = writeln!(out, "    [*] --> {}", id(first));
    }
    for (name, state) in &def.states {
        for (label, target) in state.edges() {
            let label = label.replace([':', '\n'], " ");
            let _ = writeln!(out, "    {} --> {} : {}", id(name), id(target), label);
        }
        if state.terminal.is_some() {
            let _ = writeln!(out, "    {} --> [*]", id(name));
        }
    }
    out
}

/// A string as a dot quoted id.
fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A Graphviz digraph: a point for the start, rounded boxes for states, double octagons for
/// terminal states (green for success, red for failure), labeled edges.
pub(crate) fn dot(name: &str, def: &LoopDef) -> String {
    let mut out = format!("digraph {} {{\n", dot_quote(name));
    out.push_str("    rankdir=LR;\n    node [shape=box, style=rounded];\n");
    out.push_str("    \"__start\" [shape=point, label=\"\"];\n");
    for (state_name, state) in &def.states {
        match state.terminal {
            Some(Terminal::Success) => {
                let _ = writeln!(
                    out,
                    "    {} [shape=doubleoctagon, color=green];",
                    dot_quote(state_name)
                );
            }
            Some(Terminal::Failure) => {
                let _ = writeln!(
                    out,
                    "    {} [shape=doubleoctagon, color=red];",
                    dot_quote(state_name)
                );
            }
            None => {
                let _ = writeln!(out, "    {};", dot_quote(state_name));
            }
        }
    }
    if let Some(first) = initial(def) {
        let _ = writeln!(out, "    \"__start\" -> {};", dot_quote(first));
    }
    for (state_name, state) in &def.states {
        for (label, target) in state.edges() {
            let _ = writeln!(
                out,
                "    {} -> {} [label={}];",
                dot_quote(state_name),
                dot_quote(target),
                dot_quote(&label)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// The graph as arrows, one state after another: `test --success--> done`, with `[*] -->` on
/// the initial state and `--> [*] (success)` on terminal states.
pub(crate) fn text_arrows(def: &LoopDef) -> Vec<(String, Vec<String>)> {
    def.states
        .iter()
        .map(|(name, state)| {
            let mut lines = Vec::new();
            if initial(def) == Some(name.as_str()) {
                lines.push(format!("[*] --> {name}"));
            }
            for (label, target) in state.edges() {
                lines.push(format!("{name} --{label}--> {target}"));
            }
            match state.terminal {
                Some(Terminal::Success) => lines.push(format!("{name} --> [*] (success)")),
                Some(Terminal::Failure) => lines.push(format!("{name} --> [*] (failure)")),
                None => {}
            }
            (name.clone(), lines)
        })
        .collect()
}
