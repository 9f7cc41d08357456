//! `dloop watch`: a terminal dashboard over the project's runs (the model and drawing are in
//! [`crate::watch`]). This file owns the terminal: raw mode and the alternate screen, restored
//! on every way out (q, Ctrl-C, an error, a panic), and the keys.

use std::io::IsTerminal;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::crossterm::{cursor, execute};

use super::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::exit::Exit;
use crate::project::Project;
use crate::storage::Storage;
use crate::watch::{App, Screen, view};

/// Watch the project's runs live: a list of live, waiting, paused and recently finished runs
/// (loop, status, state, step, elapsed, cost), and for the selected one its timeline and the
/// live tail of its running step's output.
///
/// Keys: ↑/↓ (or k/j) select, Enter opens a run, Esc goes back, s stops the run, r resumes it
/// in the background, o shows its step's full output in $PAGER (default less), q quits and
/// leaves the terminal as it was.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// How often to read new records, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub(crate) interval: u64,
}

/// Puts the terminal back however `watch` ends (a guard, so an error or a panic does too).
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> std::io::Result<TerminalGuard> {
        enable_raw_mode()?;
        let guard = TerminalGuard;
        execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
        let _ = disable_raw_mode();
    }
}

/// Runs the dashboard until `q`.
pub(crate) fn cmd_watch(ctx: &Ctx, args: WatchArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(CliError::new(
            ErrorKind::Usage,
            "`dloop watch` needs a terminal on stdin and stdout",
        )
        .with_hint("use `dloop status --json` or `dloop logs RUN -f` in scripts"));
    }
    let storage = Storage::for_project(&project)?;
    let store = storage.store();
    let agent_base = |profile: &str| super::output::agent_base(ctx, &project, profile);
    let interval = Duration::from_millis(args.interval.max(50));
    let mut app = App::new();
    let guard = TerminalGuard::enter().map_err(|e| CliError::io("setting up the terminal", e))?;
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut terminal =
        ratatui::Terminal::new(backend).map_err(|e| CliError::io("setting up the terminal", e))?;
    let mut next_refresh = Instant::now();
    loop {
        if Instant::now() >= next_refresh {
            if let Err(e) = app.refresh(store, &agent_base, super::status::now()) {
                app.message = format!("cannot read runs: {}", e.source);
            }
            next_refresh = Instant::now() + interval;
            terminal
                .draw(|f| view::draw(f, &app))
                .map_err(|e| CliError::io("drawing", e))?;
        }
        let wait = next_refresh.saturating_duration_since(Instant::now());
        if !event::poll(wait).map_err(|e| CliError::io("reading keys", e))? {
            continue;
        }
        match event::read().map_err(|e| CliError::io("reading keys", e))? {
            Event::Key(key) if key.kind == KeyEventKind::Press => {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                match key.code {
                    KeyCode::Char('q') => break,
                    _ if ctrl_c => break,
                    KeyCode::Up | KeyCode::Char('k') => app.move_by(-1),
                    KeyCode::Down | KeyCode::Char('j') => app.move_by(1),
                    KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => {
                        app.screen = Screen::Detail;
                    }
                    KeyCode::Esc | KeyCode::Left | KeyCode::Backspace | KeyCode::Char('h') => {
                        app.screen = Screen::List;
                    }
                    KeyCode::Char('s') => app.message = stop(ctx, &app),
                    KeyCode::Char('r') => app.message = resume(ctx, &app),
                    KeyCode::Char('o') => {
                        if let Some(row) = app.current() {
                            let id = row.id.clone();
                            app.message = page_output(ctx, &id, &mut terminal);
                        }
                    }
                    _ => {}
                }
                // Show the key's effect now, not at the next refresh.
                next_refresh = Instant::now();
            }
            Event::Resize(..) => next_refresh = Instant::now(),
            _ => {}
        }
    }
    drop(terminal);
    drop(guard);
    Ok(Exit::Ok)
}

/// Runs `dloop ARGS` in the project quietly and returns its first line of narration.
fn dloop(ctx: &Ctx, args: &[&str]) -> String {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return format!("cannot find dloop: {e}"),
    };
    match Command::new(exe)
        .args(args)
        .current_dir(&ctx.cwd)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(if out.stderr.is_empty() {
                &out.stdout
            } else {
                &out.stderr
            })
            .into_owned();
            text.lines().next().unwrap_or("done").to_owned()
        }
        Err(e) => format!("cannot run dloop: {e}"),
    }
}

fn stop(ctx: &Ctx, app: &App) -> String {
    match app.current() {
        Some(row) if row.live => dloop(ctx, &["stop", &row.id]),
        Some(row) => format!("{} is not running", row.id),
        None => "no run selected".to_owned(),
    }
}

fn resume(ctx: &Ctx, app: &App) -> String {
    match app.current() {
        Some(row) if row.resumable => dloop(ctx, &["resume", &row.id, "--background"]),
        Some(row) => format!("{} is {}: not resumable", row.id, row.status),
        None => "no run selected".to_owned(),
    }
}

/// Leaves the dashboard for `dloop output RUN | $PAGER`, then comes back.
fn page_output<B: ratatui::backend::Backend>(
    ctx: &Ctx,
    id: &str,
    terminal: &mut ratatui::Terminal<B>,
) -> String {
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
    let _ = disable_raw_mode();
    let pager = std::env::var("PAGER").unwrap_or_else(|_| "less -R".to_owned());
    let exe = std::env::current_exe().unwrap_or_else(|_| "dloop".into());
    // The pager is the user's shell command (`less -R`, `bat`); the run id is a run id (checked
    // when the row was read), passed as its own argument.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" output \"$1\" | {pager}"))
        .arg(exe)
        .arg(id)
        .current_dir(&ctx.cwd)
        .status();
    let _ = enable_raw_mode();
    let _ = execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide);
    let _ = terminal.clear();
    match status {
        Ok(_) => String::new(),
        Err(e) => format!("cannot run the pager: {e}"),
    }
}
