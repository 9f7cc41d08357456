//! Time, as one injected door: the wall clock the log's timestamps and the run's limits read,
//! and the waiting between steps.
//!
//! The step loop never calls `SystemTime::now` or `thread::sleep` itself: it asks its
//! [`Clock`]. [`SystemClock`] is the real one; [`ManualClock`] moves only when told to (or when
//! something sleeps on it), so tests of delays, backoffs and run timeouts take milliseconds
//! and assert exact times instead of racing a real clock.
//!
//! Action processes still measure their own per-action limits (`timeout`, `idle_timeout`) in
//! real time: a process runs in real time whatever the test's clock says.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dloop_core::Timestamp;

/// A source of time for a session.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;

    /// Waits `duration`, or less when `interrupted` returns true (checked often enough that a
    /// stop during a long delay takes effect at once).
    fn sleep(&self, duration: Duration, interrupted: &dyn Fn() -> bool);
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// How often a sleeping session checks for a stop request.
const SLEEP_TICK: Duration = Duration::from_millis(20);

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Timestamp::from_millis(ms)
    }

    fn sleep(&self, duration: Duration, interrupted: &dyn Fn() -> bool) {
        let end = std::time::Instant::now() + duration;
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            if left.is_zero() || interrupted() {
                return;
            }
            std::thread::sleep(left.min(SLEEP_TICK));
        }
    }
}

/// A clock for tests: it stands still until [`ManualClock::advance`] moves it, and a sleep on it
/// returns at once after moving it by the slept time.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: Mutex<u64>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now_ms: Mutex::new(start.as_millis()),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now_ms.lock().unwrap_or_else(|e| e.into_inner());
        *now += by.as_millis() as u64;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(*self.now_ms.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn sleep(&self, duration: Duration, interrupted: &dyn Fn() -> bool) {
        if !interrupted() {
            self.advance(duration);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_or_slept_on() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000));
        assert_eq!(clock.now().as_millis(), 1_000);
        clock.sleep(Duration::from_secs(6), &|| false);
        assert_eq!(clock.now().as_millis(), 7_000);
        clock.sleep(Duration::from_secs(6), &|| true);
        assert_eq!(clock.now().as_millis(), 7_000, "an interrupted sleep");
        clock.advance(Duration::from_millis(5));
        assert_eq!(clock.now().as_millis(), 7_005);
    }
}
