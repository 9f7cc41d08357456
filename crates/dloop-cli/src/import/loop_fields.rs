//! The loop-level fields of a little-loops file: what maps to dloop's loop fields and limits,
//! and a note for each of the others.

use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

use super::{Lines, Note, key, scalar, seconds};

/// Loop-wide defaults that little-loops applies to each state.
pub(crate) struct StateDefaults {
    /// `default_timeout`, as a dloop duration.
    pub(crate) timeout: Option<Yaml>,
    /// `default_idle_timeout`, as a dloop duration.
    pub(crate) idle_timeout: Option<Yaml>,
}

/// Reads `default_timeout` and `default_idle_timeout`.
pub(crate) fn state_defaults(src: &Hash) -> StateDefaults {
    StateDefaults {
        timeout: src.get(&key("default_timeout")).and_then(seconds),
        idle_timeout: src.get(&key("default_idle_timeout")).and_then(seconds),
    }
}

/// Fields that are only metadata for `ll-loop list`/`show`.
const METADATA: &[&str] = &["category", "labels", "visibility", "commands"];

/// Converts every loop-level field except `states`; returns the dloop loop (without states).
pub(crate) fn convert(src: &Hash, lines: &Lines, notes: &mut Vec<Note>, fallback: &str) -> Hash {
    let mut out = Hash::new();
    let mut limits = Hash::new();
    let mut note = |field: &str, message: String| {
        notes.push(Note {
            line: lines.top(field),
            message,
        });
    };
    let name = src
        .get(&key("name"))
        .and_then(scalar)
        .filter(|n| crate::project::check_name(n).is_ok())
        .unwrap_or_else(|| fallback.to_owned());
    out.insert(key("name"), key(&name));
    let has_max_steps = src.contains_key(&key("max_steps"));
    for (field, value) in src {
        let Some(field) = scalar(field) else { continue };
        match field.as_str() {
            "name" | "states" | "default_timeout" | "default_idle_timeout" => {}
            "description" | "initial" | "input_key" => {
                out.insert(key(&field), value.clone());
            }
            "context" => {
                out.insert(key("context"), value.clone());
            }
            "required_inputs" => {
                out.insert(key("required"), value.clone());
            }
            "scope" => {
                let text = format!("{value:?}");
                if text.contains("${") {
                    note(
                        &field,
                        "`scope` holds `${...}`, which dloop scopes do not interpolate: it was \
                         left out; write the paths literally"
                            .to_owned(),
                    );
                } else {
                    out.insert(key("scope"), value.clone());
                }
            }
            "max_steps" => {
                limits.insert(key("max_steps"), value.clone());
            }
            "max_iterations" if !has_max_steps => {
                // The legacy spelling of max_steps (little-loops reads it so when alone).
                limits.insert(key("max_steps"), value.clone());
            }
            "timeout" => match seconds(value) {
                Some(d) => {
                    limits.insert(key("timeout"), d);
                }
                None => note(
                    &field,
                    "`timeout` is not a number of seconds; left out".to_owned(),
                ),
            },
            "max_edge_revisits" => {
                limits.insert(key("max_edge_visits"), value.clone());
            }
            "backoff" => match seconds(value) {
                Some(d) => {
                    out.insert(key("delay"), d);
                }
                None => note(
                    &field,
                    "`backoff` is not a number of seconds; left out".to_owned(),
                ),
            },
            "on_handoff" => match scalar(value).as_deref() {
                Some("pause") => {
                    out.insert(key("on_handoff"), key("pause"));
                }
                Some("spawn") => {
                    out.insert(key("on_handoff"), key("continue"));
                }
                other => {
                    out.insert(key("on_handoff"), key("pause"));
                    note(
                        &field,
                        format!(
                            "`on_handoff: {}` has no dloop equivalent; imported as `pause` (use \
                             `dloop cancel` on a paused run to end it)",
                            other.unwrap_or("?")
                        ),
                    );
                }
            },
            f if METADATA.contains(&f) => note(
                &field,
                format!("`{f}` is ll-loop metadata; dloop has only `description`: left out"),
            ),
            f if f.ends_with("_ok") => note(
                &field,
                format!("`{f}` silences a little-loops lint rule; dloop has none: left out"),
            ),
            f => note(&field, format!("`{f}` is not mapped: {}", advice(f))),
        }
    }
    // dloop's defaults differ (100 steps, no edge limit): keep little-loops' behaviour.
    if !limits.contains_key(&key("max_steps")) {
        limits.insert(key("max_steps"), Yaml::Integer(50));
    }
    if !limits.contains_key(&key("max_edge_visits")) {
        limits.insert(key("max_edge_visits"), Yaml::Integer(100));
    }
    out.insert(key("limits"), Yaml::Hash(limits));
    out
}

/// What to do about a loop field dloop has no equivalent for.
fn advice(field: &str) -> &'static str {
    match field {
        "parameters" => "declare the inputs in `context:` (defaults) and `required:`",
        "singleton" => "give the loop a `scope:` that other loops share",
        "on_max_steps" => "dloop pauses at max_steps (resumable); run the summary state by hand",
        "max_iterations" | "on_max_iterations" | "maintain" | "on_maintain" => {
            "dloop runs end at a terminal state; restart with `dloop run` (e.g. from cron)"
        }
        "llm" => "configure the judge's runner profile in .loops/config.yaml",
        "config" => "put runner settings in .loops/config.yaml",
        "circuit" => "use `limits.max_edge_visits` or a `convergence` evaluator to stop stalls",
        "host_guard" | "prompt_size_guard" | "pruning_profile" | "tamper_guard"
        | "prepatch_check" => "dloop has no such guard; drop it or check it in a shell state",
        "session_mode" => "dloop starts each prompt in a fresh session",
        "import" | "from" | "flow" | "state_defs" => {
            "resolve the composition with little-loops first and import the expanded loop"
        }
        "targets" => "move the targets into `context:`",
        _ => "check what it did and rewrite it by hand",
    }
}
