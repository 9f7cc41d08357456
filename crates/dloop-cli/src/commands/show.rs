//! `dloop show LOOP`: a loop's states, actions, routes, limits and scope, as text, a Mermaid or
//! dot diagram, or JSON.

use clap::{Args, ValueEnum};

use dloop_core::model::{ActionRef, LoopDef, StateDef};

use super::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::load::load;
use crate::project::{Project, resolve_loop};
use crate::render::json::{RouteJson, ShowJson, StateJson};
use crate::render::{graph, human, json};

/// The longest action summary, in characters, before it is cut with `…`.
const SUMMARY_CHARS: usize = 60;

/// How `show` prints the loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Readable text: settings, then each state with its action and arrows.
    #[default]
    Text,
    /// A Mermaid stateDiagram-v2 (paste into a ```mermaid block).
    Mermaid,
    /// A Graphviz digraph (`dloop show LOOP --format dot | dot -Tsvg > loop.svg`).
    Dot,
    /// The definition and every state's resolved routes, as JSON.
    Json,
}

/// Show a loop: its states, actions, routes per verdict, limits, scope and required context.
///
/// The loop must parse; problems `dloop validate` would report are printed on stderr as
/// warnings, and the loop is shown anyway.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// A loop name (from .loops/) or a path to a .yaml/.yml file.
    #[arg(value_name = "LOOP", add = clap_complete::engine::ArgValueCandidates::new(crate::complete::loop_names))]
    pub(crate) loop_ref: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

/// What `show` knows about one loop, handed to one renderer.
#[derive(Debug)]
pub(crate) struct ShowReport<'a> {
    /// The loop's name.
    pub(crate) name: &'a str,
    /// The file as shown to the user.
    pub(crate) file: &'a str,
    /// The definition.
    pub(crate) def: &'a LoopDef,
    /// The states with defaults resolved.
    pub(crate) states: Vec<StateJson>,
}

/// Prints the loop in `args.format`; exit 2 when it does not parse.
pub(crate) fn cmd_show(ctx: &Ctx, args: ShowArgs) -> CmdResult {
    let project = Project::discover(&ctx.cwd);
    let file = resolve_loop(&args.loop_ref, &ctx.cwd, project.as_ref())?;
    let loaded = load(file, &ctx.cwd);
    if !loaded.diagnostics.is_empty() {
        ctx.ui
            .status(&human::diagnostics(&loaded, ctx.ui.color_stderr));
    }
    let Some(parsed) = &loaded.parsed else {
        return Err(CliError::new(
            ErrorKind::Invalid,
            format!("{} is not a loop file dloop can read", loaded.display),
        )
        .with_hint("fix the problems above; `dloop validate` checks the file again"));
    };
    let report = ShowReport {
        name: &loaded.file.name,
        file: &loaded.display,
        def: &parsed.def,
        states: states(&parsed.def),
    };
    let text = match args.format {
        Format::Text => human::show(&report, ctx.ui.color),
        Format::Mermaid => graph::mermaid(report.def),
        Format::Dot => graph::dot(report.name, report.def),
        Format::Json => json::to_pretty(&ShowJson {
            name: report.name,
            file: report.file,
            definition: report.def,
            states: report.states,
        }),
    };
    ctx.ui.print(&text)?;
    Ok(Exit::Ok)
}

/// Every state with its action summary, evaluator and resolved routes (also the web view's
/// diagram).
pub(crate) fn states(def: &LoopDef) -> Vec<StateJson> {
    def.states
        .iter()
        .map(|(name, state)| {
            let (action, summary) = match state.action() {
                Some(ActionRef::Shell(cmd)) => (Some("shell"), Some(summarize(cmd))),
                Some(ActionRef::Prompt(prompt)) => (Some("prompt"), Some(summarize(prompt))),
                Some(ActionRef::SubLoop(name)) => (Some("loop"), Some(summarize(name))),
                None => (None, None),
            };
            StateJson {
                name: name.clone(),
                initial: def.initial.as_deref() == Some(name.as_str()),
                terminal: state.terminal,
                action,
                summary,
                evaluator: state.evaluator().type_name(),
                routes: if state.terminal.is_some() {
                    Vec::new()
                } else {
                    routes(state)
                },
            }
        })
        .collect()
}

/// One route per verdict the state's evaluator can produce, resolved through `_` and `next`;
/// for `classify` (any text is a verdict) the written keys. Then `retries exhausted`.
fn routes(state: &StateDef) -> Vec<RouteJson> {
    let evaluator = state.evaluator();
    let verdicts: Vec<String> = match evaluator.verdicts() {
        Some(verdicts) => verdicts.iter().map(|v| (*v).to_owned()).collect(),
        None => {
            let mut keys: Vec<String> = state.on.iter().flat_map(|on| on.keys().cloned()).collect();
            if state.next.is_some() && !keys.iter().any(|k| k == "_") {
                keys.push("_".to_owned());
            }
            if !keys.iter().any(|k| k == "error") {
                keys.push("error".to_owned());
            }
            keys
        }
    };
    let mut routes: Vec<RouteJson> = verdicts
        .into_iter()
        .map(|verdict| {
            let target = state.route(&verdict).map(str::to_owned);
            RouteJson { verdict, target }
        })
        .collect();
    if let Some(target) = state.retries.as_ref().and_then(|r| r.on_exhausted.clone()) {
        routes.push(RouteJson {
            verdict: "retries exhausted".to_owned(),
            target: Some(target),
        });
    }
    routes
}

/// The first non-empty line of `text`, cut at [`SUMMARY_CHARS`] with `…`; `…` is also added
/// when more lines follow.
fn summarize(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    let more = lines.next().is_some();
    let mut out: String = first.chars().take(SUMMARY_CHARS).collect();
    if more || first.chars().count() > SUMMARY_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        assert_eq!(summarize("cargo test"), "cargo test");
        assert_eq!(summarize("\n  first\nsecond"), "first…");
        assert_eq!(summarize(&"x".repeat(61)), format!("{}…", "x".repeat(60)));
        assert_eq!(summarize(""), "");
    }
}
