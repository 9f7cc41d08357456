//! Human output: diagnostics with source snippets, the `list` table, the `show` text view.
//! Renderers return strings; color is decided by the caller.

use std::fmt::Write as _;

use dloop_core::diagnostic::render;
use dloop_core::model::Terminal;

use super::Paint;
use super::graph;
use super::json::LoopJson;
use crate::commands::show::ShowReport;
use crate::load::LoadedLoop;

/// Every diagnostic of one loop, rustc style, each followed by a blank line.
pub(crate) fn diagnostics(loaded: &LoadedLoop, color: bool) -> String {
    let mut out = String::new();
    for diag in &loaded.diagnostics {
        let text = render(diag, &loaded.display, &loaded.source);
        let text = match text.strip_prefix("error:") {
            Some(rest) => format!("{}{rest}", Paint::Red.apply(color, "error:")),
            None => text,
        };
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// `validate`: the problems of every loop, then one summary line.
pub(crate) fn validate(loops: &[LoadedLoop], color: bool) -> String {
    let mut out = String::new();
    for loaded in loops {
        out.push_str(&diagnostics(loaded, color));
    }
    let problems: usize = loops.iter().map(|l| l.diagnostics.len()).sum();
    let invalid = loops.iter().filter(|l| !l.is_valid()).count();
    let noun = |n: usize, one: &str, many: &str| {
        if n == 1 {
            one.to_owned()
        } else {
            many.to_owned()
        }
    };
    if invalid == 0 {
        let names: Vec<&str> = loops.iter().map(|l| l.file.name.as_str()).collect();
        let line = format!(
            "ok: {} {} valid{}",
            loops.len(),
            noun(loops.len(), "loop", "loops"),
            if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            }
        );
        let _ = writeln!(out, "{}", Paint::Green.apply(color, &line));
    } else {
        let line = format!(
            "{problems} {} in {invalid} of {} {}",
            noun(problems, "problem", "problems"),
            loops.len(),
            noun(loops.len(), "loop", "loops")
        );
        let _ = writeln!(out, "{}", Paint::Red.apply(color, &line));
    }
    out
}

/// `list`: an aligned table `NAME  STATES  DESCRIPTION`; invalid loops show `invalid:` and
/// their first problem in place of the description.
pub(crate) fn list(rows: &[LoopJson], color: bool) -> String {
    if rows.is_empty() {
        return "no loops in .loops/ (`dloop init` creates an example)\n".to_owned();
    }
    let width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!("{:width$}  STATES  DESCRIPTION\n", "NAME");
    for row in rows {
        let states = row.states.map_or("-".to_owned(), |n| n.to_string());
        let about = if row.valid {
            row.description.clone().unwrap_or_default()
        } else {
            let first = row.error.as_deref().unwrap_or("not a loop");
            let more = if row.problems > 1 {
                format!(" (+{} more)", row.problems - 1)
            } else {
                String::new()
            };
            Paint::Red.apply(color, &format!("✗ invalid: {first}{more}"))
        };
        let name = format!("{:width$}", row.name);
        let _ = writeln!(
            out,
            "{}  {states:>6}  {about}",
            Paint::Bold.apply(color, &name)
        );
    }
    out
}

/// `show --format text`: the loop's settings, then each state with its action, evaluator and
/// arrows (`check --success--> done`); `[*] -->` marks the initial state and `--> [*]` the
/// terminal ones.
pub(crate) fn show(report: &ShowReport<'_>, color: bool) -> String {
    let def = report.def;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {}",
        Paint::Bold.apply(color, report.name),
        Paint::Dim.apply(color, &format!("({})", report.file))
    );
    if let Some(description) = &def.description {
        let _ = writeln!(out, "{description}");
    }
    out.push('\n');
    let field = |out: &mut String, key: &str, value: String| {
        let _ = writeln!(out, "  {:<10}{value}", format!("{key}:"));
    };
    field(
        &mut out,
        "initial",
        def.initial.clone().unwrap_or_else(|| "(none)".to_owned()),
    );
    let mut limits = vec![format!("max_steps {}", def.limits.max_steps())];
    if let Some(timeout) = &def.limits.timeout {
        limits.push(format!("timeout {timeout}"));
    }
    if let Some(visits) = &def.limits.max_edge_visits {
        limits.push(format!("max_edge_visits {}", visits.0));
    }
    if let Some(delay) = &def.delay {
        limits.push(format!("delay {delay}"));
    }
    field(&mut out, "limits", limits.join(", "));
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    field(&mut out, "scope", list(&def.scope));
    field(&mut out, "required", list(&def.required));
    let context: Vec<String> = def
        .context
        .iter()
        .map(|(k, v)| format!("{k}={}", v.0))
        .collect();
    field(&mut out, "context", list(&context));
    field(
        &mut out,
        "input",
        format!("{} (the INPUT of `dloop run`)", def.input_key()),
    );
    if let Some(runner) = &def.runner {
        field(&mut out, "runner", runner.clone());
    }
    out.push('\n');
    let arrows = graph::text_arrows(def);
    for (state, (_, lines)) in report.states.iter().zip(arrows) {
        let mut head = Paint::Bold.apply(color, &state.name);
        match (&state.action, &state.summary) {
            (Some(kind), Some(summary)) => {
                let _ = write!(head, "  {kind}: {summary}");
                let _ = write!(
                    head,
                    "  {}",
                    Paint::Dim.apply(color, &format!("[{}]", state.evaluator))
                );
            }
            _ if state.terminal.is_none() => {
                let _ = write!(
                    head,
                    "  {}",
                    Paint::Dim.apply(color, &format!("(no action) [{}]", state.evaluator))
                );
            }
            _ => {}
        }
        if let Some(terminal) = state.terminal {
            let outcome = match terminal {
                Terminal::Success => Paint::Green.apply(color, "success"),
                Terminal::Failure => Paint::Red.apply(color, "failure"),
            };
            let _ = write!(head, "  terminal: {outcome}");
        }
        let _ = writeln!(out, "{head}");
        for line in lines {
            let _ = writeln!(out, "    {line}");
        }
        for route in &state.routes {
            if route.target.is_none() {
                let why = if route.verdict == "error" {
                    "fails the run"
                } else {
                    "no route: fails the run"
                };
                let _ = writeln!(
                    out,
                    "    {}",
                    Paint::Dim.apply(
                        color,
                        &format!("{} --{}--> ({why})", state.name, route.verdict)
                    )
                );
            }
        }
    }
    out
}
