//! `run --dry-run`: what a run would do, without doing it: the limits, the resolved context,
//! and each state's action with the context's values filled in (as text, for reading: a real
//! shell action gets its values as variables, see `interpolate::shell`), its routes, and
//! whether it ends the run. `--json` prints the same as one JSON document.

use std::collections::BTreeMap;

use dloop_core::LoopDef;
use dloop_core::interpolate::{self, Namespace, Part};
use dloop_core::model::{ActionRef, Terminal};
use dloop_runtime::runs::StartRequest;
use serde::Serialize;

/// The plan of a run.
#[derive(Debug, Serialize)]
pub(crate) struct Plan {
    #[serde(rename = "loop")]
    loop_name: String,
    initial: Option<String>,
    max_steps: u64,
    timeout_ms: Option<u64>,
    delay_ms: Option<u64>,
    context: BTreeMap<String, String>,
    states: Vec<PlannedState>,
}

/// One state of the plan.
#[derive(Debug, Serialize)]
struct PlannedState {
    name: String,
    /// `shell`, `prompt`, `loop`, or `null` for a routing or terminal state.
    action: Option<&'static str>,
    /// The action's text with the context filled in; references only known once the run is
    /// under way (`captured`, `prev`, ...) stay as written.
    text: Option<String>,
    /// `success` or `failure` for a state that ends the run.
    terminal: Option<&'static str>,
    /// Verdict → next state.
    routes: BTreeMap<String, String>,
}

impl Plan {
    /// The plan of `request` for loop `name`.
    pub(crate) fn new(name: &str, def: &LoopDef, request: &StartRequest<'_>) -> Plan {
        let states = def
            .states
            .iter()
            .map(|(state, state_def)| {
                let (action, text) = match state_def.action() {
                    Some(ActionRef::Shell(cmd)) => {
                        (Some("shell"), Some(fill(cmd, &request.context)))
                    }
                    Some(ActionRef::Prompt(p)) => (Some("prompt"), Some(fill(p, &request.context))),
                    Some(ActionRef::SubLoop(l)) => (Some("loop"), Some(l.to_owned())),
                    None => (None, None),
                };
                PlannedState {
                    name: state.clone(),
                    action,
                    text,
                    terminal: state_def.terminal.map(|t| match t {
                        Terminal::Success => "success",
                        Terminal::Failure => "failure",
                    }),
                    routes: state_def
                        .edges()
                        .into_iter()
                        .map(|(verdict, to)| (verdict, to.to_owned()))
                        .collect(),
                }
            })
            .collect();
        Plan {
            loop_name: name.to_owned(),
            initial: def.initial.clone(),
            max_steps: request.max_steps,
            timeout_ms: request.timeout_ms,
            delay_ms: request.delay_ms,
            context: request.context.clone(),
            states,
        }
    }

    /// The plan as text.
    pub(crate) fn text(&self) -> String {
        let mut out = format!("dry run of loop `{}`: nothing is started\n", self.loop_name);
        out.push_str(&format!(
            "initial state: {}\n",
            self.initial.as_deref().unwrap_or("?")
        ));
        out.push_str(&format!("max_steps: {}\n", self.max_steps));
        let human = |ms: u64| dloop_core::HumanDuration(std::time::Duration::from_millis(ms));
        if let Some(ms) = self.timeout_ms {
            out.push_str(&format!("timeout: {}\n", human(ms)));
        }
        if let Some(ms) = self.delay_ms {
            out.push_str(&format!("delay: {}\n", human(ms)));
        }
        out.push_str("context:\n");
        if self.context.is_empty() {
            out.push_str("  (none)\n");
        }
        for (key, value) in &self.context {
            out.push_str(&format!("  {key} = {}\n", interpolate::shell_quote(value)));
        }
        out.push_str("states:\n");
        for state in &self.states {
            let what = match (state.action, &state.text, state.terminal) {
                (Some(kind), Some(text), _) => format!("{kind}: {}", first_line(text)),
                (_, _, Some(terminal)) => format!("terminal: {terminal}"),
                _ => "route".to_owned(),
            };
            out.push_str(&format!("  {}: {what}", state.name));
            if !state.routes.is_empty() {
                let routes: Vec<String> = state
                    .routes
                    .iter()
                    .map(|(verdict, to)| format!("{verdict} → {to}"))
                    .collect();
                out.push_str(&format!("  [{}]", routes.join(", ")));
            }
            out.push('\n');
            if let Some(text) = &state.text
                && text.lines().filter(|l| !l.trim().is_empty()).count() > 1
            {
                for line in text.lines() {
                    out.push_str(&format!("      {line}\n"));
                }
            }
        }
        out
    }
}

/// `text` with `${context.*}` references replaced by their values (the default or empty when
/// missing); every other reference stays as written.
fn fill(text: &str, context: &BTreeMap<String, String>) -> String {
    let template = interpolate::parse_template(text);
    let mut out = String::new();
    for part in &template.parts {
        match part {
            Part::Literal(literal) => out.push_str(literal),
            Part::Var(var) => match (&var.namespace, var.path.as_slice()) {
                (Namespace::Context, [key]) => match context.get(key) {
                    Some(value) => out.push_str(value),
                    None => out.push_str(var.default.as_deref().unwrap_or("")),
                },
                _ => out.push_str(&var.to_string()),
            },
        }
    }
    out
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() > 60 {
        format!("{}…", line.chars().take(59).collect::<String>())
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_values_are_filled_in_and_other_references_kept() {
        let context = BTreeMap::from([("cmd".to_owned(), "cargo test".to_owned())]);
        assert_eq!(
            fill(
                "run ${context.cmd:raw} then ${captured.t.output} ${context.x:default=y}",
                &context
            ),
            "run cargo test then ${captured.t.output} y"
        );
    }
}
