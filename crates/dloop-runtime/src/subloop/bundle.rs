//! The sub-loop bundle: every loop a run's `loop:` states reach (transitively), kept with the
//! run as its blob [`BUNDLE_BLOB`] so that a run submitted for workers is self-contained, as
//! its own definition is: a worker resolves children from it, never from its own checkout
//! (which, on another machine, may differ).
//!
//! Invariants:
//! - the bundle is collected when the run is created (`dloop submit`), with the loader `dloop
//!   run` uses, so what a worker runs is what the submitter validated;
//! - each entry carries the SHA-256 of its text, checked when it is read: an altered entry is
//!   refused (the step fails with an `error`), never run;
//! - a child created from a bundle keeps the same bundle (its own children resolve from it),
//!   so a run with a bundle resolves children from it wherever it is resumed (a worker, or a
//!   `dloop resume` in a checkout), never from a checkout.

use std::collections::BTreeMap;

use dloop_core::model::LoopDef;
use dloop_store::RunMeta;
use serde::{Deserialize, Serialize};

use super::ChildLoop;
use crate::error::RuntimeError;

/// The blob a run's bundle is kept in.
pub const BUNDLE_BLOB: &str = "sub-loops.json";

/// One bundled loop: its text and the SHA-256 of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundledLoop {
    /// The loop file's text.
    pub definition: String,
    /// The SHA-256 (hex) of `definition`.
    pub sha256: String,
}

/// Loop name → bundled loop, for every loop a run's `loop:` states reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubLoopBundle {
    /// The loops, by the name `loop:` states give them.
    pub loops: BTreeMap<String, BundledLoop>,
}

impl SubLoopBundle {
    /// Collects every loop reachable from `root` through `loop:` states, each loaded with
    /// `load` (as the session's host would load it when the child starts). Each name is
    /// loaded once, so a loop reached twice (or a cycle `load` did not refuse) ends.
    ///
    /// # Errors
    /// The first loop `load` refuses, as its sentence.
    pub fn collect(
        root: &LoopDef,
        load: &mut dyn FnMut(&str) -> Result<ChildLoop, String>,
    ) -> Result<SubLoopBundle, String> {
        let mut bundle = SubLoopBundle::default();
        let mut pending: Vec<String> = names(root);
        while let Some(name) = pending.pop() {
            if bundle.loops.contains_key(&name) {
                continue;
            }
            let child = load(&name)?;
            pending.extend(names(&child.def));
            bundle.loops.insert(
                name,
                BundledLoop {
                    sha256: RunMeta::sha256_hex(&child.text),
                    definition: child.text,
                },
            );
        }
        Ok(bundle)
    }

    /// Whether no loop is bundled (the run has no `loop:` states).
    pub fn is_empty(&self) -> bool {
        self.loops.is_empty()
    }

    /// The bundle as the blob's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("strings always serialize")
    }

    /// Reads run `run_id`'s bundle blob.
    ///
    /// # Errors
    /// [`RuntimeError::StoredDefinition`] when it is not a bundle.
    pub fn from_bytes(run_id: &str, bytes: &[u8]) -> Result<SubLoopBundle, RuntimeError> {
        serde_json::from_slice(bytes).map_err(|e| RuntimeError::StoredDefinition {
            run_id: run_id.to_owned(),
            message: format!("its `{BUNDLE_BLOB}` is not a sub-loop bundle: {e}"),
        })
    }

    /// Loop `name` from the bundle, its hash checked and its text parsed; `Err` is a sentence
    /// for the user (the step's `error`).
    pub fn load(&self, name: &str) -> Result<ChildLoop, String> {
        let Some(entry) = self.loops.get(name) else {
            return Err(format!(
                "no loop named `{name}` was kept with this run when it was submitted"
            ));
        };
        if RunMeta::sha256_hex(&entry.definition) != entry.sha256 {
            return Err(format!(
                "the copy of loop `{name}` kept with this run is altered (its SHA-256 does \
                 not match)"
            ));
        }
        let def = crate::runs::parse_definition(name, &entry.definition)
            .map_err(|e| format!("the copy of loop `{name}` kept with this run: {e}"))?;
        Ok(ChildLoop {
            name: name.to_owned(),
            def,
            text: entry.definition.clone(),
            path: None,
        })
    }
}

/// The loops `def`'s `loop:` states name.
fn names(def: &LoopDef) -> Vec<String> {
    def.states
        .values()
        .filter_map(|s| s.sub_loop.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "name: p\ninitial: a\nstates:\n  a:\n    loop: c\n    on: { success: ok, _: ok }\n  ok:\n    terminal: success\n";
    const CHILD: &str = "name: c\ninitial: a\nstates:\n  a:\n    loop: g\n    on: { success: ok, _: ok }\n  ok:\n    terminal: success\n";
    const GRAND: &str = "name: g\ninitial: ok\nstates:\n  ok:\n    terminal: success\n";

    fn parse(text: &str) -> LoopDef {
        crate::runs::parse_definition("x", text).unwrap()
    }

    fn loader(name: &str) -> Result<ChildLoop, String> {
        let text = match name {
            "c" => CHILD,
            "g" => GRAND,
            _ => return Err(format!("no loop named `{name}`")),
        };
        Ok(ChildLoop {
            name: name.to_owned(),
            def: parse(text),
            text: text.to_owned(),
            path: None,
        })
    }

    #[test]
    fn collects_transitively_and_round_trips() {
        let bundle = SubLoopBundle::collect(&parse(PARENT), &mut loader).unwrap();
        assert_eq!(
            bundle.loops.keys().collect::<Vec<_>>(),
            vec!["c", "g"],
            "the grandchild is bundled too"
        );
        let back = SubLoopBundle::from_bytes("r", &bundle.to_bytes()).unwrap();
        assert_eq!(back, bundle);
        assert_eq!(back.load("g").unwrap().text, GRAND);
    }

    #[test]
    fn a_missing_loop_fails_the_collection() {
        let mut only_child = |name: &str| match name {
            "c" => loader("c"),
            other => Err(format!("no loop named `{other}`")),
        };
        let err = SubLoopBundle::collect(&parse(PARENT), &mut only_child).unwrap_err();
        assert!(err.contains("`g`"), "{err}");
    }

    #[test]
    fn an_altered_or_absent_entry_is_refused() {
        let mut bundle = SubLoopBundle::collect(&parse(PARENT), &mut loader).unwrap();
        bundle
            .loops
            .get_mut("c")
            .unwrap()
            .definition
            .push_str("# edited\n");
        assert!(bundle.load("c").unwrap_err().contains("altered"));
        assert!(bundle.load("zz").unwrap_err().contains("`zz`"));
        assert!(SubLoopBundle::from_bytes("r", b"[1]").is_err());
    }
}
