//! The progress of a foreground run on stderr: one plain line per step (state, result, verdict,
//! where it went), and on a terminal a live line under them showing the running state, the
//! step, the elapsed time and the action's last line of output, cut to the terminal's width.
//!
//! With `-v` every line an action prints is shown as it arrives, indented under a `│` so it
//! stays apart from dloop's own lines. A step that ends in `error` shows the last lines of its
//! output (stderr first) and the command that prints all of it.
//!
//! It implements the runtime's `RunObserver`; the runtime itself never prints.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dloop_core::event::ActionKind;
use dloop_core::event::Event;
use dloop_core::state::PendingAction;
use dloop_core::{Record, RunState};
use dloop_runtime::actions::AgentActivity;
use dloop_runtime::actions::output::Stream;
use dloop_runtime::observer::RunObserver;
use dloop_runtime::signals::SignalRecord;

use crate::render::Paint;

/// What the live line shows.
#[derive(Debug, Default)]
struct Live {
    /// `(state, step, since)` of the running action.
    action: Option<(String, u64, Instant)>,
    /// Run time before this action started.
    elapsed_before: u64,
    /// Whether the live line is on screen now.
    drawn: bool,
    /// The running action's last complete line of output, made safe for the terminal.
    last_line: String,
    /// Its unfinished line.
    partial: Vec<u8>,
    /// A wait between steps (delay, backoff): until when, and why.
    waiting: Option<(Instant, String)>,
    /// Which signals arrived (to say "stopping…" after Ctrl-C).
    signals: Option<Arc<SignalRecord>>,
}

/// Prints a run's steps on stderr.
pub(crate) struct Progress {
    color: bool,
    live: Option<Arc<Mutex<Live>>>,
    stop_ticker: Arc<AtomicBool>,
    last_step: u64,
    last_result: Option<String>,
    /// `-v`: show every line of output.
    verbose: bool,
    /// `-v`: the unfinished line of output.
    verbose_partial: Vec<u8>,
    /// The last lines of the latest action's output (stderr first), for an `error` verdict.
    last_tail: Vec<String>,
    /// The latest verdict, and the step it judged.
    last_verdict: Option<(u64, String)>,
    /// Whether the running action is an agent's: its stream is shown as activities, not bytes.
    agent_running: bool,
    /// `-q`: no lines at all.
    quiet: bool,
    /// Per sub-loop depth (index 0: depth 1), the child's step being shown: its number and
    /// its action's result.
    children: Vec<(u64, Option<String>)>,
}

impl Progress {
    /// A progress printer; `live_line` when stderr is a terminal (and not `--json`); `verbose`
    /// shows every line of output. `quiet` (`-q`) prints nothing.
    pub(crate) fn new(
        color: bool,
        live_line: bool,
        verbose: bool,
        quiet: bool,
        signals: Arc<SignalRecord>,
    ) -> Progress {
        let live_line = live_line && !quiet;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let live = live_line.then(|| {
            Arc::new(Mutex::new(Live {
                signals: Some(signals),
                ..Live::default()
            }))
        });
        if let Some(live) = &live {
            let live = Arc::clone(live);
            let stop = Arc::clone(&stop_ticker);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(250));
                    if let Ok(mut live) = live.lock() {
                        draw(&mut live);
                    }
                }
            });
        }
        Progress {
            color,
            live,
            stop_ticker,
            last_step: 0,
            last_result: None,
            verbose,
            verbose_partial: Vec::new(),
            last_tail: Vec::new(),
            last_verdict: None,
            agent_running: false,
            quiet,
            children: Vec::new(),
        }
    }

    /// `-v`: prints the lines of output completed by `bytes`.
    fn show_output(&mut self, bytes: &[u8]) {
        self.verbose_partial.extend_from_slice(bytes);
        while let Some(end) = self.verbose_partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.verbose_partial.drain(..=end).collect();
            self.output_line(&line[..line.len() - 1]);
        }
    }

    fn output_line(&self, line: &[u8]) {
        let bar = Paint::Dim.apply(self.color, "│");
        self.line(&format!("        {bar} {}", String::from_utf8_lossy(line)));
    }

    /// `-v`: prints an unfinished last line when its action ends.
    fn end_output(&mut self) {
        if !self.verbose_partial.is_empty() {
            let line = std::mem::take(&mut self.verbose_partial);
            self.output_line(&line);
        }
    }

    /// After a step judged `error`: its last lines of output and how to see all of it.
    fn show_failure_tail(&mut self, run_id: &str) {
        let Some((step, _)) = self.last_verdict.take().filter(|(_, v)| v == "error") else {
            return;
        };
        let tail = std::mem::take(&mut self.last_tail);
        // With -v the output was just shown in full.
        if !self.verbose {
            for line in tail {
                self.line(&format!(
                    "        {} {line}",
                    Paint::Dim.apply(self.color, "│")
                ));
            }
        }
        self.line(&format!(
            "        {} all of it: dloop output {run_id} {step}",
            Paint::Dim.apply(self.color, "│")
        ));
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if let Some(live) = &self.live
            && let Ok(mut live) = live.lock()
        {
            if live.drawn {
                let _ = err.write_all(b"\r\x1b[K");
                live.drawn = false;
            }
            let _ = writeln!(err, "{text}");
            return;
        }
        let _ = writeln!(err, "{text}");
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::SeqCst);
        if let Some(live) = &self.live
            && let Ok(mut live) = live.lock()
            && live.drawn
        {
            let _ = std::io::stderr().lock().write_all(b"\r\x1b[K");
            live.drawn = false;
        }
    }
}

fn draw(live: &mut Live) {
    let Some(text) = live_text(live, terminal_width().saturating_sub(1)) else {
        return;
    };
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("\r\x1b[K{text}").as_bytes());
    live.drawn = true;
}

/// What the live line says, cut to `width`: "stopping…" after Ctrl-C, the wait between steps,
/// or the running step with its last line of output. `None` when there is nothing to show.
fn live_text(live: &Live, width: usize) -> Option<String> {
    let stopping = live.signals.as_ref().is_some_and(|s| s.was_interrupted());
    let text = if stopping {
        "  ■ stopping… (Ctrl-C again to kill)".to_owned()
    } else if let Some((until, why)) = &live.waiting {
        let left = until.saturating_duration_since(Instant::now());
        format!("  ◷ {why}: {} left", clock(left.as_millis() as u64 + 999))
    } else {
        let (state, step, since) = live.action.as_ref()?;
        let elapsed = live.elapsed_before + since.elapsed().as_millis() as u64;
        let mut text = format!("  ▸ step {step}  {state}  {}", clock(elapsed));
        if !live.last_line.is_empty() {
            text.push_str("  │ ");
            text.push_str(&live.last_line);
        }
        text
    };
    Some(fit(&text, width))
}

/// `text` cut to `width` characters (a wrapped live line could not be redrawn in place).
pub(crate) fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A line of action output for the live line: control characters (escape sequences, `\r`)
/// dropped, so the output cannot move the cursor or break the redraw.
fn printable(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// The width of the terminal on stderr (80 when it cannot be told).
#[allow(unsafe_code)]
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills the winsize struct we pass, which lives across the call.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) };
    if rc == 0 && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}

/// The last `n` lines of an action's output for a failure message: stderr's when it printed
/// any, else the output's.
pub(crate) fn tail_lines(stderr: &str, output: &str, n: usize) -> Vec<String> {
    let text = if stderr.trim().is_empty() {
        output
    } else {
        stderr
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| fit(&printable(l.as_bytes()), 200))
        .collect()
}

/// `m:ss` or `h:mm:ss`.
pub(crate) fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    }
}

impl Progress {
    /// One line of a sub-loop's child run, indented under the parent's step lines by depth:
    /// its start or resume, and each of its steps as the parent's are shown.
    fn child_line(&mut self, depth: u32, record: &Record, state: &RunState) {
        let at = depth.max(1) as usize - 1;
        if self.children.len() <= at {
            self.children.resize(at + 1, (0, None));
        }
        let indent = "    ".repeat(at + 1);
        let arrow = Paint::Dim.apply(self.color, "↳");
        let text = match &record.event {
            Event::RunStarted {
                run_id, loop_name, ..
            } => format!("{indent}{arrow} sub-loop run {run_id} started (loop {loop_name})"),
            Event::RunResumed { .. } => format!(
                "{indent}{arrow} sub-loop run {} resumed at step {} in `{}`",
                state.run_id,
                state.step,
                state.current.as_deref().unwrap_or("?")
            ),
            Event::ActionFinished { result, .. } => {
                self.children[at].1 = Some(match (&result.error, result.exit_code) {
                    (Some(_), _) => "not started".to_owned(),
                    (None, Some(code)) => format!("exit {code}"),
                    (None, None) => "no exit".to_owned(),
                });
                return;
            }
            Event::Evaluated { step, .. } => {
                self.children[at].0 = *step;
                return;
            }
            Event::Transitioned { from, to, verdict } => {
                let (step, result) = &mut self.children[at];
                let result = result.take().unwrap_or_default();
                format!(
                    "{indent}{step:>4}  {:<14} {result:<12} {verdict} → {to}",
                    fit(from, 14)
                )
            }
            Event::ActionInterrupted {
                state: name,
                reason,
                ..
            } => format!(
                "{indent}{:>4}  {name:<14} interrupted ({reason})",
                state.step
            ),
            Event::RunCompleted { state: name } => format!("{indent}{arrow} completed in `{name}`"),
            Event::RunFailed { error, .. } => {
                format!("{indent}{arrow} failed: {}", fit(error, 100))
            }
            Event::RunPaused { reason, .. } => {
                format!("{indent}{arrow} paused ({})", reason.as_str())
            }
            _ => return,
        };
        self.line(&text);
    }
}

impl RunObserver for Progress {
    fn on_child_record(&mut self, depth: u32, record: &Record, state: &RunState) {
        self.child_line(depth, record, state);
    }

    fn on_action_start(&mut self, pending: &PendingAction, state: &RunState) {
        self.agent_running = pending.kind == ActionKind::Prompt;
        if let Some(live) = &self.live
            && let Ok(mut live) = live.lock()
        {
            live.action = Some((pending.state.clone(), pending.step, Instant::now()));
            live.waiting = None;
            live.elapsed_before = state.elapsed_ms();
            live.last_line.clear();
            live.partial.clear();
            draw(&mut live);
        }
    }

    fn on_wait(&mut self, wait: Duration, why: &str) {
        if let Some(live) = &self.live
            && let Ok(mut live) = live.lock()
        {
            live.waiting = Some((Instant::now() + wait, why.to_owned()));
            draw(&mut live);
        }
    }

    fn on_agent_activity(&mut self, activity: &AgentActivity) {
        // Under the step line: one compact line per event (the whole text with -v), and the
        // latest one on the live line.
        let width = terminal_width().saturating_sub(10);
        let lines = crate::render::agent_view::lines(activity, self.verbose, width, self.color);
        let bar = Paint::Dim.apply(self.color, "│");
        for line in &lines {
            self.line(&format!("        {bar} {line}"));
        }
        if let Some(live) = &self.live
            && let Some(last) =
                crate::render::agent_view::lines(activity, false, width, false).pop()
            && let Ok(mut live) = live.lock()
        {
            live.last_line = last;
        }
    }

    fn on_output(&mut self, _stream: Stream, bytes: &[u8]) {
        if self.agent_running {
            // An agent's stream is JSON for dloop; its activities are shown instead.
            return;
        }
        if self.verbose {
            self.show_output(bytes);
            return;
        }
        if let Some(live) = &self.live
            && let Ok(mut live) = live.lock()
        {
            live.partial.extend_from_slice(bytes);
            if let Some(end) = live.partial.iter().rposition(|b| *b == b'\n') {
                let done: Vec<u8> = live.partial.drain(..=end).collect();
                if let Some(line) = done
                    .split(|b| *b == b'\n')
                    .map(printable)
                    .rfind(|l| !l.is_empty())
                {
                    live.last_line = line;
                }
            }
            // A line that never ends (a progress bar) still shows, up to a screenful.
            if live.partial.len() > 4096 {
                let cut = live.partial.len() - 4096;
                live.partial.drain(..cut);
            }
        }
    }

    fn on_record(&mut self, record: &Record, state: &RunState) {
        let paint = |p: Paint, t: &str| p.apply(self.color, t);
        match &record.event {
            Event::RunStarted {
                run_id, loop_name, ..
            } => {
                self.line(&format!(
                    "run {} started (loop {loop_name})",
                    paint(Paint::Bold, run_id)
                ));
            }
            Event::RunResumed { .. } => {
                self.line(&format!(
                    "run {} resumed at step {} in `{}`",
                    paint(Paint::Bold, &state.run_id),
                    state.step,
                    state.current.as_deref().unwrap_or("?")
                ));
            }
            Event::ActionFinished { result, .. } => {
                self.end_output();
                self.last_tail = tail_lines(&result.stderr, &result.excerpt, 3);
                if let Some(live) = &self.live
                    && let Ok(mut live) = live.lock()
                {
                    live.action = None;
                }
                self.last_result =
                    Some(match (&result.error, result.timed_out, result.exit_code) {
                        (Some(_), _, _) => "not started".to_owned(),
                        (None, Some(_), _) => "timed out".to_owned(),
                        (None, None, Some(code)) => format!("exit {code}"),
                        (None, None, None) => format!("signal {}", result.signal.unwrap_or(0)),
                    });
            }
            Event::Evaluated { step, verdict, .. } => {
                self.last_step = *step;
                self.last_verdict = Some((*step, verdict.clone()));
            }
            Event::Transitioned { from, to, verdict } => {
                let result = self.last_result.take().unwrap_or_default();
                self.line(&format!(
                    "  {:>4}  {:<14} {result:<12} {verdict} → {to}",
                    self.last_step,
                    fit(from, 14)
                ));
                self.show_failure_tail(&state.run_id);
            }
            Event::RunFailed { .. } => {
                if let (Some(result), Some((step, verdict))) =
                    (self.last_result.take(), self.last_verdict.clone())
                {
                    let name = state.current.as_deref().unwrap_or("?");
                    self.line(&format!(
                        "  {step:>4}  {name:<14} {result:<12} {verdict} → run failed"
                    ));
                }
                self.show_failure_tail(&state.run_id);
            }
            Event::RetryScheduled {
                state: name,
                retry,
                verdict,
                delay_ms,
            } => {
                let result = self.last_result.take().unwrap_or_default();
                self.line(&format!(
                    "  {:>4}  {name:<14} {result:<12} {verdict} → retry {retry}{}",
                    self.last_step,
                    if *delay_ms > 0 {
                        format!(" in {}", crate::render::run_view::duration(*delay_ms))
                    } else {
                        String::new()
                    }
                ));
                self.show_failure_tail(&state.run_id);
            }
            Event::ActionInterrupted {
                state: name,
                reason,
                ..
            } => {
                self.end_output();
                self.line(&format!(
                    "  {:>4}  {name:<14} interrupted ({reason})",
                    state.step
                ));
            }
            Event::LogRepaired {
                dropped_bytes,
                reason,
            } => {
                self.line(&format!(
                    "{} the log's last {dropped_bytes} bytes were cut ({reason}); the run continues from the last whole record",
                    paint(Paint::Yellow, "warning:")
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(last_line: &str) -> Live {
        Live {
            action: Some(("a-state-with-a-long-name".into(), 12, Instant::now())),
            last_line: last_line.into(),
            ..Live::default()
        }
    }

    #[test]
    fn the_live_line_fits_the_terminal() {
        let live =
            running("compiling dloop-core v0.1.0 (/work/main/crates/dloop-core) with a long line");
        let text = live_text(&live, 50).expect("text");
        assert_eq!(text.chars().count(), 50, "{text}");
        assert!(text.ends_with('…'));
        assert!(text.starts_with("  ▸ step 12  a-state-with-a-long-name  0:00  │ "));
    }

    #[test]
    fn a_wait_and_a_stop_say_so() {
        let mut live = running("");
        live.waiting = Some((
            Instant::now() + Duration::from_secs(5),
            "delay before the next step".into(),
        ));
        let text = live_text(&live, 80).expect("text");
        assert_eq!(text, "  ◷ delay before the next step: 0:05 left");
        let signals = Arc::new(SignalRecord::default());
        signals.note_interrupt();
        live.signals = Some(signals);
        assert_eq!(
            live_text(&live, 80).expect("text"),
            "  ■ stopping… (Ctrl-C again to kill)"
        );
    }

    #[test]
    fn long_state_names_keep_the_columns() {
        assert_eq!(fit("a-very-long-state-name", 14), "a-very-long-s…");
        assert_eq!(fit("short", 14), "short");
    }
}
