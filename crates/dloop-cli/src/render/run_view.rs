//! Human views of runs: the `status` and `history` tables and the `inspect` page. Renderers
//! return strings; color is decided by the caller.

use std::fmt::Write as _;

use dloop_core::Timestamp;
use dloop_core::event::PauseReason;
use dloop_core::state::{AgentTotals, RunStatus};

use super::Paint;
use crate::runs::RunInfo;

/// A duration for people: `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub(crate) fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if secs < 60 {
        format!("{}.{}s", secs, (ms % 1000) / 100)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs < 86_400 {
        format!("{}h{:02}m", secs / 3600, (secs / 60) % 60)
    } else {
        format!("{}d{:02}h", secs / 86_400, (secs / 3600) % 24)
    }
}

/// A time for tables: `2026-11-21 10:41:33` (UTC).
pub(crate) fn date_time(ts: Timestamp) -> String {
    let text = ts.to_string();
    format!("{} {} UTC", &text[..10], &text[11..19])
}

/// The first line of `text`, cut to `max` characters with `…`.
pub(crate) fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let line = line.trim();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

/// Aligns `rows` under `header`; the last column is not padded. Cells are plain text; `paint`
/// colors the cells of column `col` after alignment.
fn table(header: &[&str], rows: &[Vec<String>], color: bool, status_col: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>, is_header: bool| {
        let last = cells.len() - 1;
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            let shown = if is_header {
                Paint::Bold.apply(color, cell)
            } else if i == status_col {
                status_paint(cell).map_or_else(|| cell.clone(), |p| p.apply(color, cell))
            } else {
                cell.clone()
            };
            text.push_str(&shown);
            if i < last {
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect(), true);
    for row in rows {
        line(row.clone(), false);
    }
    out
}

fn status_paint(status: &str) -> Option<Paint> {
    match status {
        "completed" => Some(Paint::Green),
        "failed" | "crashed" => Some(Paint::Red),
        "paused" | "timed_out" => Some(Paint::Yellow),
        _ => None,
    }
}

/// Reason and message of a run, for the last column: `max_steps: message`.
fn reason_text(info: &RunInfo) -> String {
    let state = &info.state;
    let reason = state.pause_reason.map(PauseReason::as_str);
    let message = state.message.as_deref().map(|m| first_line(m, 60));
    if let Some(wait) = info.scope_wait() {
        return format!("in the queue behind run {}", wait.holder);
    }
    match (info.status(), reason, message) {
        ("crashed", _, _) => "no process drives it: `dloop resume` continues".to_owned(),
        ("timed_out", _, _) => "timeout reached".to_owned(),
        (_, Some(r), Some(m)) if !m.is_empty() => format!("{r}: {m}"),
        (_, Some(r), _) => r.to_owned(),
        (_, None, Some(m)) => m,
        (_, None, None) => String::new(),
    }
}

/// The elapsed time to show: a live run's is still growing.
pub(crate) fn elapsed_ms(info: &RunInfo, now: Timestamp) -> u64 {
    if info.live {
        info.state.elapsed_ms_at(now)
    } else {
        info.state.elapsed_ms()
    }
}

/// The loop name of a run (from its log, else its id).
fn loop_name(info: &RunInfo) -> String {
    if !info.state.loop_name.is_empty() {
        return info.state.loop_name.clone();
    }
    dloop_core::run_id::RunId::parse(&info.id)
        .map(|id| id.loop_name().to_owned())
        .unwrap_or_default()
}

/// `status`: `RUN  LOOP  STATUS  STATE  STEP  ELAPSED  REASON`, rows in the given order.
pub(crate) fn status(runs: &[RunInfo], all: bool, now: Timestamp, color: bool) -> String {
    if runs.is_empty() {
        return if all {
            "no runs (`dloop run LOOP` starts one)\n".to_owned()
        } else {
            "no live or resumable runs (`dloop status --all` shows finished ones too)\n".to_owned()
        };
    }
    let agents = runs.iter().any(|r| !r.state.agent.is_empty());
    // A sub-loop run listed after its parent is drawn under it, one level deeper.
    let levels = crate::commands::status::nesting_levels(runs);
    let rows: Vec<Vec<String>> = runs
        .iter()
        .zip(levels)
        .map(|(info, level)| {
            let id = match level {
                0 => info.id.clone(),
                n => format!("{}└ {}", "  ".repeat(n - 1), info.id),
            };
            let mut row = vec![
                id,
                loop_name(info),
                info.status_label(),
                info.state.current.clone().unwrap_or_else(|| "-".to_owned()),
                info.state.step.to_string(),
                duration(elapsed_ms(info, now)),
            ];
            if agents {
                row.push(cost(&info.state.agent));
            }
            row.push(reason_text(info));
            row
        })
        .collect();
    let mut header = vec!["RUN", "LOOP", "STATUS", "STATE", "STEP", "ELAPSED"];
    if agents {
        header.push("COST");
    }
    header.push("REASON");
    table(&header, &rows, color, 2)
}

/// A run's or state's agent cost (`$0.42`), `-` when no CLI reported one.
fn cost(totals: &AgentTotals) -> String {
    if totals.is_empty() || totals.cost_usd == 0.0 {
        "-".to_owned()
    } else {
        format!("${:.2}", totals.cost_usd)
    }
}

/// `12.3k`-style token counts.
fn tokens(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// One line of agent figures: calls, time, turns, tokens, cost, model.
pub(crate) fn agent_summary(totals: &AgentTotals) -> String {
    let mut parts = vec![
        format!(
            "{} call{}",
            totals.invocations,
            if totals.invocations == 1 { "" } else { "s" }
        ),
        duration(totals.time_ms),
    ];
    if totals.turns > 0 {
        parts.push(format!("{} turns", totals.turns));
    }
    let t = &totals.tokens;
    parts.push(format!(
        "tokens {} in, {} out, {} cached",
        tokens(t.input),
        tokens(t.output),
        tokens(t.cached)
    ));
    if totals.cost_usd > 0.0 {
        parts.push(format!("${:.2}", totals.cost_usd));
    }
    if let Some(model) = &totals.model {
        parts.push(model.clone());
    }
    parts.join(", ")
}

/// `history`: `RUN  LOOP  OUTCOME  STEPS  DURATION  FINISHED  REASON`.
pub(crate) fn history(runs: &[RunInfo], color: bool) -> String {
    if runs.is_empty() {
        return "no finished runs\n".to_owned();
    }
    let agents = runs.iter().any(|r| !r.state.agent.is_empty());
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|info| {
            let reason = match info.state.status {
                RunStatus::Failed => info
                    .state
                    .message
                    .as_deref()
                    .or(info.state.last_error.as_deref())
                    .map(|m| first_line(m, 60))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let mut row = vec![
                info.id.clone(),
                loop_name(info),
                info.status_label(),
                info.state.step.to_string(),
                duration(info.state.elapsed_ms()),
                date_time(info.state.last_ts),
            ];
            if agents {
                row.push(cost(&info.state.agent));
            }
            row.push(reason);
            row
        })
        .collect();
    let mut header = vec!["RUN", "LOOP", "OUTCOME", "STEPS", "DURATION", "FINISHED"];
    if agents {
        header.push("COST");
    }
    header.push("REASON");
    table(&header, &rows, color, 2)
}

/// What the user can do next with a run, or `None` for a finished one.
pub(crate) fn next_step(info: &RunInfo) -> Option<String> {
    let id = &info.id;
    if info.scope_wait().is_some() {
        return Some(format!(
            "it starts when its scope is free; `dloop stop {id}` leaves the queue (paused: \
             `dloop resume {id} --queue` waits again)"
        ));
    }
    if let Some(text) = sub_loop_next_step(info) {
        return Some(text);
    }
    let text = match info.status() {
        "running" => format!("`dloop logs -f {id}` follows it; `dloop stop {id}` pauses it"),
        "crashed" => format!(
            "no process drives it: `dloop resume {id}` continues; `dloop cancel {id}` ends it"
        ),
        "timed_out" => format!("`dloop resume {id} --timeout DUR` continues with a larger timeout"),
        "paused" => match info.state.pause_reason {
            Some(PauseReason::MaxSteps) => {
                format!("`dloop resume {id} --max-steps N` takes N more steps")
            }
            Some(PauseReason::NeedsDecision) => format!(
                "`dloop resume {id} --rerun` re-runs the interrupted action; `--skip-to STATE` moves on"
            ),
            Some(PauseReason::Handoff) => {
                format!("answer the handoff, then `dloop resume {id}` continues")
            }
            Some(PauseReason::QueueTimeout) => format!(
                "`dloop resume {id} --queue` waits for the scope again (`--queue-timeout DUR` \
                 to wait longer)"
            ),
            _ => format!("`dloop resume {id}` continues; `dloop cancel {id}` ends it"),
        },
        _ => return None,
    };
    Some(text)
}

/// What to do next with a resumable run that is, or waits on, a sub-loop: a child is resumed by
/// resuming its parent; a parent paused by its child (not by a stop) resumes the child first.
fn sub_loop_next_step(info: &RunInfo) -> Option<String> {
    if !info.is_resumable() {
        return None;
    }
    let state = &info.state;
    if let Some(parent) = &state.parent {
        return Some(format!(
            "`dloop resume {}` (its parent run) continues both; `dloop resume {}` alone takes a \
             decision or a larger limit for it (then resume the parent)",
            parent.run_id, info.id
        ));
    }
    let by_child = state
        .interrupted
        .as_ref()
        .filter(|i| i.kind == dloop_core::event::ActionKind::SubLoop)
        .and_then(|i| state.child_of_step(i.step))
        .filter(|_| {
            !matches!(
                state.pause_reason,
                Some(PauseReason::Stopped | PauseReason::Interrupted) | None
            )
        })?;
    Some(format!(
        "`dloop resume {}` resumes its sub-loop run {} where it paused, then this run (a \
         decision or a larger limit for the child: `dloop resume {} ...` first)",
        info.id, by_child.run_id, by_child.run_id
    ))
}

/// `inspect`: the run's status, position, context, captures, per-state counters, last error,
/// its parent and child runs (sub-loops; `children` holds those that could be read, by id),
/// and what to do next.
pub(crate) fn inspect(
    info: &RunInfo,
    children: &std::collections::BTreeMap<String, RunInfo>,
    now: Timestamp,
    color: bool,
) -> String {
    let state = &info.state;
    let mut out = String::new();
    let bold = |t: &str| Paint::Bold.apply(color, t);
    let status = info.status_label();
    let status_shown =
        status_paint(&status).map_or_else(|| status.clone(), |p| p.apply(color, &status));
    let _ = writeln!(out, "run       {}", bold(&info.id));
    let _ = writeln!(out, "loop      {}", loop_name(info));
    if let Some(parent) = &state.parent {
        let _ = writeln!(
            out,
            "parent    {} (state `{}`, step {}; sub-loop depth {})",
            parent.run_id, parent.state, parent.step, parent.depth
        );
    }
    match state.pause_reason {
        Some(reason) => {
            let _ = writeln!(out, "status    {status_shown} ({})", reason.as_str());
        }
        None => {
            let _ = writeln!(out, "status    {status_shown}");
        }
    }
    let _ = writeln!(out, "state     {}", state.current.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "step      {} (max {})", state.step, state.max_steps);
    let _ = writeln!(out, "started   {}", date_time(state.started_at));
    let _ = writeln!(
        out,
        "elapsed   {} in {} {}",
        duration(elapsed_ms(info, now)),
        state.sessions,
        if state.sessions == 1 {
            "session"
        } else {
            "sessions"
        }
    );
    if let Some(message) = &state.message {
        let _ = writeln!(out, "message   {}", first_line(message, 200));
    }
    if let Some(error) = &state.last_error {
        let _ = writeln!(
            out,
            "error     {}",
            Paint::Red.apply(color, &first_line(error, 200))
        );
    }
    if !state.context.is_empty() {
        let _ = writeln!(out, "\n{}", bold("context"));
        let width = state
            .context
            .keys()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0);
        for (key, value) in &state.context {
            let _ = writeln!(out, "  {key:<width$}  {}", first_line(value, 80));
        }
    }
    if !state.captures.is_empty() {
        let _ = writeln!(out, "\n{}", bold("captures"));
        for (name, c) in &state.captures {
            let exit = c
                .result
                .exit_code
                .map_or_else(|| "no exit code".to_owned(), |code| format!("exit {code}"));
            let _ = writeln!(
                out,
                "  {name}: {} step {}, {exit}, {}, {} bytes{}",
                c.state,
                c.step,
                duration(c.result.duration_ms),
                c.result.bytes,
                c.verdict
                    .as_deref()
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default(),
            );
            for line in c.result.excerpt.lines().take(5) {
                let _ = writeln!(out, "    {}", Paint::Dim.apply(color, line));
            }
            if c.result.excerpt.lines().count() > 5 {
                let _ = writeln!(out, "    {}", Paint::Dim.apply(color, "…"));
            }
        }
    }
    if !state.states.is_empty() {
        let _ = writeln!(out, "\n{}", bold("states"));
        let rows: Vec<Vec<String>> = state
            .states
            .iter()
            .map(|(name, s)| {
                vec![
                    name.clone(),
                    s.visits.to_string(),
                    s.failures.to_string(),
                    duration(s.time_ms),
                ]
            })
            .collect();
        for line in table(
            &["STATE", "VISITS", "FAILURES", "ACTION TIME"],
            &rows,
            color,
            usize::MAX,
        )
        .lines()
        {
            let _ = writeln!(out, "  {line}");
        }
    }
    if !state.children.is_empty() {
        let _ = writeln!(out, "\n{}", bold("sub-loops"));
        let rows: Vec<Vec<String>> = state
            .children
            .iter()
            .map(|c| {
                let child = children.get(&c.run_id);
                vec![
                    c.step.to_string(),
                    c.state.clone(),
                    c.run_id.clone(),
                    child.map_or_else(|| "unreadable".to_owned(), RunInfo::status_label),
                    child
                        .and_then(|i| i.state.current.clone())
                        .unwrap_or_else(|| "-".to_owned()),
                    child.map_or_else(|| "-".to_owned(), |i| i.state.step.to_string()),
                ]
            })
            .collect();
        for line in table(
            &["STEP", "STATE", "RUN", "STATUS", "ITS STATE", "ITS STEP"],
            &rows,
            color,
            3,
        )
        .lines()
        {
            let _ = writeln!(out, "  {line}");
        }
    }
    if !state.agent.is_empty() {
        let _ = writeln!(out, "\n{}", bold("agents"));
        let _ = writeln!(out, "  run: {}", agent_summary(&state.agent));
        for (name, stats) in state.states.iter().filter(|(_, s)| !s.agent.is_empty()) {
            let _ = writeln!(out, "  {name}: {}", agent_summary(&stats.agent));
            if let Some(session) = &stats.agent.session_id {
                let _ = writeln!(out, "    session {session}");
            }
        }
    }
    let outputs: Vec<_> = state
        .states
        .iter()
        .filter_map(|(name, s)| Some((name, s.last_output.as_ref()?)))
        .collect();
    if !outputs.is_empty() {
        let _ = writeln!(out, "\n{}", bold("last output per state"));
        for (name, o) in outputs {
            let where_ = if o.output_path.is_empty() {
                "printed nothing".to_owned()
            } else {
                let at = o
                    .output_offset
                    .map(|at| format!(" at byte {at}"))
                    .unwrap_or_default();
                format!(
                    "{} bytes in {}{at}; all of it: dloop output {} {}",
                    o.bytes, o.output_path, info.id, o.step
                )
            };
            let _ = writeln!(out, "  {name} (step {}): {where_}", o.step);
            let lines: Vec<&str> = o.excerpt.lines().collect();
            for line in &lines[lines.len().saturating_sub(3)..] {
                let _ = writeln!(
                    out,
                    "    {}",
                    Paint::Dim.apply(color, &first_line(line, 120))
                );
            }
        }
    }
    if let Some(next) = next_step(info) {
        let _ = writeln!(out, "\n{} {next}", Paint::Yellow.apply(color, "next:"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        let table = [
            (0, "0ms"),
            (850, "850ms"),
            (12_345, "12.3s"),
            (245_000, "4m05s"),
            (7_380_000, "2h03m"),
            (273_600_000, "3d04h"),
        ];
        for (ms, text) in table {
            assert_eq!(duration(ms), text, "{ms}");
        }
    }

    #[test]
    fn agent_figures_read_as_one_line() {
        let totals = AgentTotals {
            invocations: 2,
            time_ms: 125_000,
            turns: 7,
            tokens: dloop_core::event::TokenUsage {
                input: 950,
                output: 12_345,
                cached: 2_500_000,
                cache_write: 0,
            },
            cost_usd: 0.4213,
            model: Some("claude-sonnet-4-5".into()),
            session_id: Some("s1".into()),
        };
        assert_eq!(
            agent_summary(&totals),
            "2 calls, 2m05s, 7 turns, tokens 950 in, 12.3k out, 2.5M cached, $0.42, claude-sonnet-4-5"
        );
        assert_eq!(cost(&totals), "$0.42");
        assert_eq!(cost(&AgentTotals::default()), "-");
    }

    #[test]
    fn first_line_cuts_long_text() {
        assert_eq!(first_line("\n  hello\nworld", 10), "hello");
        assert_eq!(first_line("abcdefghijkl", 5), "abcd…");
    }
}
