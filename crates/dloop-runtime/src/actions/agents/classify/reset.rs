//! When a rate limit ends, read from the limit message when the CLI says so unambiguously, and
//! the wall clock that times are measured against.
//!
//! Invariant: a time that needs a zone to be read (`resets 3:45pm`) is never guessed; the
//! backoff ladder handles those.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dloop_core::Timestamp;
use regex::{Regex, RegexBuilder};

/// A reset time written in a limit message, when it is unambiguous: Claude's
/// `usage limit reached|<unix seconds>`, Gemini's `reset after 19h14m47s` and
/// `retry in 44.09s`. Wall-clock times without a zone (`resets 3:45pm`, codex's `try again at
/// 3:28 PM`) are left to the backoff ladder.
pub fn reset_from_text(text: &str, now: Timestamp) -> Option<Timestamp> {
    static_regexes(|unix, after, retry| {
        if let Some(c) = unix.captures(text) {
            let secs: u64 = c[1].parse().ok()?;
            return Some(Timestamp::from_millis(secs.checked_mul(1000)?));
        }
        if let Some(c) = after.captures(text) {
            let part = |i: usize| {
                c.get(i)
                    .and_then(|m| m.as_str().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let secs = part(1) * 3600 + part(2) * 60 + part(3);
            return (secs > 0).then(|| Timestamp::from_millis(now.as_millis() + secs * 1000));
        }
        if let Some(c) = retry.captures(text) {
            let secs: f64 = c[1].parse().ok()?;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // positive, small
            let ms = (secs * 1000.0).ceil() as u64;
            return Some(Timestamp::from_millis(now.as_millis() + ms));
        }
        None
    })
}

fn static_regexes<T>(f: impl FnOnce(&Regex, &Regex, &Regex) -> T) -> T {
    use std::sync::OnceLock;
    static RES: OnceLock<(Regex, Regex, Regex)> = OnceLock::new();
    let (a, b, c) = RES.get_or_init(|| {
        let re = |p: &str| {
            RegexBuilder::new(p)
                .case_insensitive(true)
                .build()
                .expect("valid")
        };
        (
            re(r"usage limit reached\|(\d{9,11})"),
            re(r"reset after (?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?"),
            re(r"retry in (\d+(?:\.\d+)?)s"),
        )
    });
    f(a, b, c)
}

/// Now, as a [`Timestamp`].
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}
