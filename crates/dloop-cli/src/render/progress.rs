//! The progress of a foreground run on stderr: one plain line per step (state, result, verdict,
//! where it went), and on a terminal a live line under them showing the running state, the
//! step and the elapsed time, redrawn every second.
//!
//! It implements the runtime's `RunObserver`; the runtime itself never prints.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dloop_core::event::Event;
use dloop_core::state::PendingAction;
use dloop_core::{Record, RunState};
use dloop_runtime::observer::RunObserver;

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
}

/// Prints a run's steps on stderr.
pub(crate) struct Progress {
    color: bool,
    live: Option<Arc<Mutex<Live>>>,
    stop_ticker: Arc<AtomicBool>,
    last_step: u64,
    last_result: Option<String>,
}

impl Progress {
    /// A progress printer; `live_line` when stderr is a terminal (and not `--json`).
    pub(crate) fn new(color: bool, live_line: bool) -> Progress {
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let live = live_line.then(|| Arc::new(Mutex::new(Live::default())));
        if let Some(live) = &live {
            let live = Arc::clone(live);
            let stop = Arc::clone(&stop_ticker);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1000));
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
        }
    }

    fn line(&self, text: &str) {
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
    let Some((state, step, since)) = &live.action else {
        return;
    };
    let elapsed = live.elapsed_before + since.elapsed().as_millis() as u64;
    let text = format!("\r\x1b[K  ▸ step {step}  {state}  {}", clock(elapsed));
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
    live.drawn = true;
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

impl RunObserver for Progress {
    fn on_action_start(&mut self, pending: &PendingAction, state: &RunState) {
        if let Some(live) = &self.live
            && let Ok(mut live) = live.lock()
        {
            live.action = Some((pending.state.clone(), pending.step, Instant::now()));
            live.elapsed_before = state.elapsed_ms();
            draw(&mut live);
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
            Event::Evaluated { step, .. } => self.last_step = *step,
            Event::Transitioned { from, to, verdict } => {
                let result = self.last_result.take().unwrap_or_default();
                self.line(&format!(
                    "  {:>4}  {from:<14} {result:<12} {verdict} → {to}",
                    self.last_step
                ));
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
                        format!(" in {}", clock(*delay_ms))
                    } else {
                        String::new()
                    }
                ));
            }
            Event::ActionInterrupted {
                state: name,
                reason,
                ..
            } => {
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
