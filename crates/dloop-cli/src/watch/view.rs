//! Draws the dashboard with ratatui: the runs list (loop, status, state, step, elapsed, cost)
//! and a run's detail (its timeline over the live tail of its running step's output), with the
//! keys on the last line. Pure: it reads an [`App`] and draws into a frame, so the tests render
//! it into ratatui's `TestBackend`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row as TableRow, Table, TableState};

use super::{App, Screen};
use crate::render::run_view::duration;

/// Draws `app` over the whole frame.
pub(crate) fn draw(frame: &mut Frame, app: &App) {
    let [main, help] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    match app.screen {
        Screen::List => list(frame, main, app),
        Screen::Detail => detail(frame, main, app),
    }
    let keys = match app.screen {
        Screen::List => "↑↓ select  ⏎ open  s stop  r resume  o output  q quit",
        Screen::Detail => "↑↓ run  esc back  s stop  r resume  o output  q quit",
    };
    let text = if app.message.is_empty() {
        keys.to_owned()
    } else {
        format!("{}  ·  {keys}", app.message)
    };
    frame.render_widget(
        Paragraph::new(text).style(Style::new().add_modifier(Modifier::DIM)),
        help,
    );
}

fn list(frame: &mut Frame, area: Rect, app: &App) {
    let block = Block::new()
        .borders(Borders::ALL)
        .title(format!(" dloop watch · {} runs ", app.rows.len()));
    if app.rows.is_empty() {
        frame.render_widget(
            Paragraph::new("no runs yet: start one with `dloop run LOOP`").block(block),
            area,
        );
        return;
    }
    let rows = app.rows.iter().map(|r| {
        let loop_name = match r.level {
            0 => r.loop_name.clone(),
            n => format!("{}└ {}", "  ".repeat(n - 1), r.loop_name),
        };
        TableRow::new([
            loop_name,
            r.status.clone(),
            r.state.clone(),
            r.step.to_string(),
            duration(r.elapsed_ms),
            if r.cost_usd > 0.0 {
                format!("${:.2}", r.cost_usd)
            } else {
                "-".to_owned()
            },
            r.id.clone(),
        ])
    });
    // Narrow terminals (80 columns over ssh) drop the run id column: the detail shows it.
    let wide = area.width >= 110;
    let mut widths = vec![
        Constraint::Length(16),
        Constraint::Length(12),
        Constraint::Min(10),
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(7),
    ];
    if wide {
        widths.push(Constraint::Length(32));
    }
    let mut header = vec!["LOOP", "STATUS", "STATE", "STEP", "ELAPSED", "COST"];
    if wide {
        header.push("RUN");
    }
    let table = Table::new(rows, widths)
        .header(TableRow::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("› ")
        .block(block);
    let mut state = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn detail(frame: &mut Frame, area: Rect, app: &App) {
    let Some(row) = app.current() else {
        return list(frame, area, app);
    };
    let [head, timeline, tail] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Percentage(45),
        Constraint::Min(3),
    ])
    .areas(area);
    let cost = if row.cost_usd > 0.0 {
        format!("  ${:.2}", row.cost_usd)
    } else {
        String::new()
    };
    frame.render_widget(
        Paragraph::new(Line::from(format!(
            "{}  {}  {}  step {}  {}{cost}",
            row.id,
            row.status,
            row.state,
            row.step,
            duration(row.elapsed_ms)
        )))
        .style(Style::new().add_modifier(Modifier::BOLD)),
        head,
    );
    let empty = super::Detail::default();
    let d = app
        .detail
        .as_ref()
        .filter(|d| d.id == row.id)
        .unwrap_or(&empty);
    frame.render_widget(last_lines(&d.timeline, timeline, " timeline "), timeline);
    let title = match (d.tail_title.is_empty(), d.tail_open) {
        (true, _) => " output ".to_owned(),
        (false, true) => format!(" output of {} · live ", d.tail_title),
        (false, false) => format!(" output of {} ", d.tail_title),
    };
    frame.render_widget(last_lines(&d.tail_lines(), tail, &title), tail);
}

/// The last lines of `lines` that fit `area` inside a bordered block.
fn last_lines<'a>(lines: &[String], area: Rect, title: &str) -> Paragraph<'a> {
    let rows = area.height.saturating_sub(2) as usize;
    let shown: Vec<Line> = lines[lines.len().saturating_sub(rows)..]
        .iter()
        .map(|l| Line::from(l.clone()))
        .collect();
    Paragraph::new(shown).block(Block::new().borders(Borders::ALL).title(title.to_owned()))
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::super::{Detail, Row};
    use super::*;

    fn row(loop_name: &str, status: &str, state: &str, step: u64, cost: f64) -> Row {
        Row {
            id: format!("{loop_name}-20260101T120000-ab12"),
            loop_name: loop_name.to_owned(),
            status: status.to_owned(),
            state: state.to_owned(),
            step,
            elapsed_ms: 75_000 * step,
            cost_usd: cost,
            live: status == "running",
            resumable: status == "paused",
            level: 0,
        }
    }

    fn app() -> App {
        let mut app = App::new();
        app.rows = vec![
            row("fix-tests", "running", "fix", 3, 0.42),
            row("lint", "paused", "check", 7, 0.0),
            row("docs", "completed", "done", 12, 1.5),
        ];
        app
    }

    fn render(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
        terminal.draw(|f| draw(f, app)).expect("draw");
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..height {
            for x in 0..width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    fn detail_app() -> App {
        let mut app = app();
        app.screen = Screen::Detail;
        app.message = "stop sent to fix-tests-20260101T120000-ab12".to_owned();
        app.detail = Some(Detail {
            id: app.rows[0].id.clone(),
            timeline: vec![
                "    1  12:00:00.000  run_started  fix-tests".to_owned(),
                "    2  12:00:00.001  state_entered  test (step 1)".to_owned(),
                "    3  12:00:02.120  action_finished  exit 1, 2.1s".to_owned(),
                "    4  12:00:02.121  transitioned  test → fix (failure)".to_owned(),
            ],
            tail: vec![
                "✎ Looking at the failing test".to_owned(),
                "⚙ Bash cargo test".to_owned(),
            ],
            tail_open: true,
            tail_title: "fix (step 3)".to_owned(),
            ..Detail::default()
        });
        app
    }

    #[test]
    fn list_at_80x24() {
        insta::assert_snapshot!(render(&app(), 80, 24));
    }

    #[test]
    fn list_wide() {
        let mut app = app();
        app.selected = 1;
        insta::assert_snapshot!(render(&app, 140, 12));
    }

    /// A parent with a running child (and the child's own child) between two other runs.
    fn nested_app() -> App {
        let mut app = app();
        let mut child = row("test-suite", "running", "s3", 3, 0.0);
        child.level = 1;
        let mut grandchild = row("unit", "running", "run", 1, 0.0);
        grandchild.level = 2;
        app.rows.insert(1, child);
        app.rows.insert(2, grandchild);
        app.selected = 1;
        app
    }

    #[test]
    fn list_with_children_at_80x24() {
        insta::assert_snapshot!(render(&nested_app(), 80, 24));
    }

    #[test]
    fn list_with_children_wide() {
        insta::assert_snapshot!(render(&nested_app(), 140, 12));
    }

    #[test]
    fn detail_at_80x24() {
        insta::assert_snapshot!(render(&detail_app(), 80, 24));
    }

    #[test]
    fn detail_wide() {
        insta::assert_snapshot!(render(&detail_app(), 140, 30));
    }

    #[test]
    fn empty_list_says_how_to_start() {
        let text = render(&App::new(), 80, 24);
        assert!(text.contains("no runs yet"), "{text}");
    }
}
