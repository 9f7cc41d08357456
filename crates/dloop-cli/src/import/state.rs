//! One little-loops state → one dloop state: its action, evaluator, routes, capture, timeouts,
//! sub-loop, and a note for each field without an equivalent.

use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

use super::interp::translate;
use super::loop_fields::StateDefaults;
use super::{Lines, Note, key, scalar, seconds};

/// The terminal state added when a verdict has no route: little-loops ends such a run with
/// "No valid transition", and dloop wants every verdict routed before it runs.
pub(crate) const NO_ROUTE_STATE: &str = "no_valid_transition";

/// A converted state.
pub(crate) struct Converted {
    /// The dloop state.
    pub(crate) state: Hash,
    /// Whether a route points at [`NO_ROUTE_STATE`].
    pub(crate) needs_no_route_state: bool,
}

/// Terminal names little-loops treats as failures when `failure:` is not given.
const FAILURE_NAMES: &[&str] = &["failed", "error", "aborted", "finalize_aborted"];

/// Converts state `name`.
pub(crate) fn convert(
    name: &str,
    src: &Hash,
    defaults: &StateDefaults,
    context: Option<&Yaml>,
    lines: &Lines,
    notes: &mut Vec<Note>,
) -> Converted {
    let mut out = Hash::new();
    let mut note = |field: &str, message: String| {
        notes.push(Note {
            line: lines.state_key(name, field),
            message: format!("state `{name}`: {message}"),
        });
    };
    let get = |field: &str| src.get(&key(field));
    if get("terminal").is_some_and(|t| matches!(t, Yaml::Boolean(true))) {
        let failure = match get("failure") {
            Some(Yaml::Boolean(b)) => *b,
            _ => FAILURE_NAMES.contains(&name),
        };
        if get("action").is_some() {
            note(
                "action",
                "a terminal's action never runs in little-loops either: left out".to_owned(),
            );
        }
        let outcome = if failure { "failure" } else { "success" };
        out.insert(key("terminal"), key(outcome));
        return Converted {
            state: out,
            needs_no_route_state: false,
        };
    }

    // The action.
    let action = get("action").and_then(scalar);
    let action_type = get("action_type").and_then(scalar);
    let mut is_prompt = false;
    if let Some(text) = &action {
        let kind = action_type.clone().unwrap_or_else(|| {
            if text.trim_start().starts_with('/') {
                "slash_command".to_owned()
            } else {
                "shell".to_owned()
            }
        });
        match kind.as_str() {
            "shell" => {
                let (text, bad) = translate(text, true);
                for b in bad {
                    note(
                        "action",
                        format!("`{}` not translated: {}", b.reference, b.advice),
                    );
                }
                out.insert(key("shell"), key(&text));
            }
            "prompt" | "slash_command" => {
                let (text, bad) = translate(text, false);
                for b in bad {
                    note(
                        "action",
                        format!("`{}` not translated: {}", b.reference, b.advice),
                    );
                }
                if kind == "slash_command" {
                    note(
                        "action",
                        "a slash command is sent as the prompt text; it works only with an \
                         agent that knows the command (claude with the plugin installed)"
                            .to_owned(),
                    );
                }
                out.insert(key("prompt"), key(&text));
                is_prompt = true;
            }
            other => {
                note(
                    "action_type",
                    format!(
                        "action_type `{other}` has no dloop runner; the state fails until you \
                         rewrite it as a shell or prompt action"
                    ),
                );
                let message = format!("state {name}: {other} action not imported");
                out.insert(key("shell"), key(&format!("echo '{message}' >&2; exit 2")));
            }
        }
    }
    if let Some(child) = get("loop").and_then(scalar) {
        out.insert(key("loop"), key(&child));
        // A little-loops child is a path under loops/; a dloop child is a loop of the project.
        note(
            "loop",
            format!(
                "sub-loop `{child}` must be a dloop loop too: import its file as well (into the \
                 same .loops/), and check its name"
            ),
        );
        if let Some(Yaml::Hash(with)) = get("with") {
            let mut mapped = Hash::new();
            for (k, v) in with {
                let v = match scalar(v) {
                    Some(text) => {
                        let (text, bad) = translate(&text, false);
                        for b in bad {
                            note(
                                "with",
                                format!("`{}` not translated: {}", b.reference, b.advice),
                            );
                        }
                        key(&text)
                    }
                    None => v.clone(),
                };
                mapped.insert(k.clone(), v);
            }
            out.insert(key("with"), Yaml::Hash(mapped));
        }
    }

    // The evaluator, and the verdicts it can produce.
    let (evaluate, verdicts) = evaluator(
        get("evaluate"),
        is_prompt,
        action.is_some() || get("loop").is_some(),
        context,
        &mut note,
    );
    if let Some(evaluate) = evaluate {
        out.insert(key("evaluate"), evaluate);
    }
    if let Some(capture) = get("capture").and_then(scalar) {
        out.insert(key("capture"), key(&capture));
    }
    for (field, default) in [
        ("timeout", &defaults.timeout),
        ("idle_timeout", &defaults.idle_timeout),
    ] {
        if let Some(d) = get(field).and_then(seconds).or_else(|| default.clone()) {
            out.insert(key(field), d);
        }
    }

    // Routes.
    let mut needs_no_route_state = false;
    let mut target = |raw: &Yaml, field: &str| -> Yaml {
        let text = scalar(raw).unwrap_or_default();
        if text == "$current" {
            return key(name);
        }
        if text.contains("${") {
            note(
                field,
                format!(
                    "route target `{text}` is computed; dloop routes are fixed: it goes to `{NO_ROUTE_STATE}`, write one route per verdict"
                ),
            );
            needs_no_route_state = true;
            return key(NO_ROUTE_STATE);
        }
        key(&text)
    };
    let mut routes = Hash::new();
    if let Some(Yaml::Hash(table)) = get("route") {
        for (verdict, to) in table {
            let verdict = scalar(verdict).unwrap_or_default();
            let verdict = match verdict.as_str() {
                "_error" => "error".to_owned(),
                v => verdict_name(v),
            };
            routes.insert(key(&verdict), target(to, "route"));
        }
    }
    for (field, value) in src {
        let Some(field) = scalar(field) else { continue };
        let Some(verdict) = field.strip_prefix("on_") else {
            continue;
        };
        let verdict = match verdict {
            "success" => "yes",
            "failure" => "no",
            // Fields of other features that start with `on_`.
            "retry_exhausted" | "rate_limit_exhausted" | "throttle_hard" => continue,
            v => v,
        };
        let verdict = verdict_name(verdict);
        if !routes.contains_key(&key(&verdict)) {
            routes.insert(key(&verdict), target(value, &field));
        }
    }
    // little-loops sends `no` to on_error when on_no is missing.
    if !routes.contains_key(&key("failure"))
        && let Some(to) = routes.get(&key("error")).cloned()
        && verdicts.contains(&"failure")
    {
        routes.insert(key("failure"), to);
    }
    if let Some(next) = get("next") {
        let next = target(next, "next");
        if routes.is_empty() {
            out.insert(key("next"), next);
        } else {
            routes.insert(key("_"), next);
        }
    } else if !routes.contains_key(&key("_")) {
        let open: Vec<&str> = match verdicts {
            [] => vec!["any verdict"],
            v => v
                .iter()
                .copied()
                .filter(|v| *v != "error" && !routes.contains_key(&key(v)))
                .collect(),
        };
        if !open.is_empty() {
            note(
                "evaluate",
                format!(
                    "no route for {}: little-loops ends the run with \"No valid transition\"; \
                     imported as a route to the failure terminal `{NO_ROUTE_STATE}`",
                    open.join(", ")
                ),
            );
            routes.insert(key("_"), key(NO_ROUTE_STATE));
            needs_no_route_state = true;
        }
    }
    if !routes.is_empty() {
        out.insert(key("on"), Yaml::Hash(routes));
    }

    for (field, _) in src {
        let Some(field) = scalar(field) else { continue };
        if let Some(advice) = unmapped(&field) {
            note(&field, format!("`{field}` is not mapped: {advice}"));
        }
    }
    Converted {
        state: out,
        needs_no_route_state,
    }
}

/// little-loops verdict → dloop verdict.
fn verdict_name(verdict: &str) -> String {
    match verdict {
        "yes" => "success".to_owned(),
        "no" => "failure".to_owned(),
        "cannot_judge" => "error".to_owned(),
        v => v.to_owned(),
    }
}

/// Converts `evaluate:`; returns dloop's evaluator (None: the default) and its verdicts (empty:
/// any text, as `classify` gives).
fn evaluator(
    src: Option<&Yaml>,
    is_prompt: bool,
    has_action: bool,
    context: Option<&Yaml>,
    note: &mut impl FnMut(&str, String),
) -> (Option<Yaml>, &'static [&'static str]) {
    const EXIT: &[&str] = &["success", "failure", "error"];
    const LLM: &[&str] = &["success", "failure", "partial", "blocked", "error"];
    let default = if !has_action {
        &["success"][..]
    } else if is_prompt {
        LLM
    } else {
        EXIT
    };
    let Some(Yaml::Hash(src)) = src else {
        return (None, default);
    };
    let ty = src.get(&key("type")).and_then(scalar).unwrap_or_default();
    let (dloop_ty, fields, verdicts): (&str, &[(&str, &str)], &'static [&'static str]) =
        match ty.as_str() {
            "exit_code" => ("exit_code", &[], EXIT),
            "output_contains" => (
                "contains",
                &[("pattern", "pattern"), ("negate", "negate")],
                &["success", "failure"],
            ),
            "output_numeric" => (
                "numeric",
                &[
                    ("operator", "operator"),
                    ("target", "target"),
                    ("key", "key"),
                ],
                EXIT,
            ),
            "output_json" => (
                "json",
                &[
                    ("path", "path"),
                    ("operator", "operator"),
                    ("target", "target"),
                ],
                EXIT,
            ),
            "convergence" => (
                "convergence",
                &[("target", "target"), ("tolerance", "tolerance")],
                &["target", "progress", "stall"],
            ),
            "classify" => ("classify", &[("line", "line")], &[]),
            "llm_structured" => (
                "llm",
                &[("prompt", "prompt"), ("min_confidence", "min_confidence")],
                LLM,
            ),
            other => {
                note(
                    "evaluate",
                    format!(
                        "evaluator `{other}` has no dloop equivalent; the state uses its default \
                         evaluator: compute the verdict in a shell state and use `exit_code`"
                    ),
                );
                return (None, default);
            }
        };
    let mut out = yaml_rust2::yaml::Hash::new();
    out.insert(key("type"), key(dloop_ty));
    for (from, to) in fields {
        if let Some(v) = src.get(&key(from)) {
            let v = match (from, scalar(v)) {
                // `.a.b.0` in little-loops, `a.b.0` in dloop.
                (&"path", Some(p)) => key(p.trim_start_matches('.')),
                // dloop's numeric targets are numbers: take the context default's.
                (&"target", Some(t)) if t.contains("${") => {
                    let (value, shown) = match numeric_default(&t, context) {
                        Some(n) => (Yaml::Real(n.clone()), format!("the context default {n}")),
                        None => (Yaml::Integer(0), "0; set the number".to_owned()),
                    };
                    note(
                        "target",
                        format!(
                            "target `{t}` is interpolated; dloop targets are numbers: wrote {shown}"
                        ),
                    );
                    value
                }
                (&"prompt", Some(t)) if t.contains("${") => key(&translate(&t, false).0),
                _ => v.clone(),
            };
            out.insert(key(to), v);
        }
    }
    if let Some(source) = src.get(&key("source")).and_then(scalar) {
        let (text, bad) = translate(&source, false);
        for b in bad {
            note(
                "source",
                format!("`{}` not translated: {}", b.reference, b.advice),
            );
        }
        out.insert(key("source"), key(&text));
    }
    if ty == "convergence" {
        match src.get(&key("direction")).and_then(scalar).as_deref() {
            Some("maximize") => {
                out.insert(key("direction"), key("up"));
            }
            Some("minimize") | None => {
                out.insert(key("direction"), key("down"));
            }
            Some(d) => note(
                "direction",
                format!("convergence direction `{d}` is unknown; dloop's default (down) applies"),
            ),
        }
    }
    for (field, _) in src {
        let field = scalar(field).unwrap_or_default();
        let known = field == "type"
            || field == "source"
            || field == "direction"
            || fields.iter().any(|(f, _)| *f == field);
        if !known {
            note(
                "evaluate",
                format!(
                    "evaluator field `{field}` of `{ty}` is not mapped: {}",
                    eval_advice(&field)
                ),
            );
        }
    }
    (Some(Yaml::Hash(out)), verdicts)
}

/// The number a `${context.KEY}` target has by default, when the loop's context gives one.
fn numeric_default(target: &str, context: Option<&Yaml>) -> Option<String> {
    let name = target.strip_prefix("${context.")?.strip_suffix('}')?;
    let Some(Yaml::Hash(context)) = context else {
        return None;
    };
    let value = scalar(context.get(&key(name))?)?;
    value.parse::<f64>().ok().map(|_| value)
}

fn eval_advice(field: &str) -> &'static str {
    match field {
        "previous" => "dloop's convergence remembers the previous value itself",
        "error_patterns" => "add a state with a second `contains` evaluator for the error text",
        "schema" | "uncertain_suffix" => "dloop's judge has a fixed verdict schema",
        _ => "rewrite it by hand",
    }
}

/// Advice for a state field with no equivalent; `None` for the fields handled above.
fn unmapped(field: &str) -> Option<&'static str> {
    Some(match field {
        "action" | "action_type" | "evaluate" | "route" | "next" | "terminal" | "failure"
        | "capture" | "timeout" | "idle_timeout" | "loop" | "with" => return None,
        f if f.starts_with("on_")
            && !matches!(
                f,
                "on_retry_exhausted" | "on_rate_limit_exhausted" | "on_throttle_hard"
            ) =>
        {
            return None;
        }
        "max_retries" | "on_retry_exhausted" | "retryable_exit_codes" => {
            "dloop's `retries: {max, on, on_exhausted}` re-runs an action on chosen verdicts; \
             a state re-entered in a cycle is bounded by `limits.max_edge_visits`"
        }
        "max_rate_limit_retries"
        | "rate_limit_backoff_base_seconds"
        | "rate_limit_max_wait_seconds"
        | "rate_limit_long_wait_ladder"
        | "on_rate_limit_exhausted" => {
            "use the state's `rate_limit: { waits: [...], total: ... }` and route `rate_limited`"
        }
        "context_passthrough" => "pass the keys the child needs in `with:`",
        "worktree" => "run the loop with `dloop run --worktree`",
        "params" => "MCP tools are not supported: call the tool from a shell action",
        "fragment" => "inline the fragment's action and evaluator",
        "agent" | "tools" | "model" | "effort" | "request_path" => {
            "declare a runner profile with these flags in .loops/config.yaml and name it in `runner:`"
        }
        "append_to_messages" => "dloop has no message log: use `capture:`",
        "session_mode" => "dloop starts each prompt in a fresh session",
        "throttle" | "on_throttle_hard" | "cost_ceiling" | "tamper_guard" | "prepatch_check"
        | "pruning_profile" => "dloop has no such guard: drop it or check it in a shell state",
        "type" | "learning" => "learning states are not supported: rewrite as shell states",
        _ => "unknown little-loops field: check what it did and rewrite it by hand",
    })
}
