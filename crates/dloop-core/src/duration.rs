//! Human durations as loop files write them: `500ms`, `30s`, `10m`, `2h`, `1d`, `1h30m`.
//!
//! A bare number is refused on purpose: `timeout: 5` could mean seconds or minutes, and guessing
//! wrong either kills a healthy action or lets a hung one run for hours.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from a loop file or a flag (`--timeout 2h`). Always greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

/// Why a duration text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The text was empty.
    #[error("empty duration: write a number and a unit, such as 30s, 10m or 2h")]
    Empty,
    /// A number without a unit.
    #[error("duration `{0}` has no unit: write {0}s, {0}m or {0}h")]
    MissingUnit(String),
    /// A unit that is not one of ms, s, m, h, d.
    #[error("duration `{text}` has an unknown unit `{unit}`: use ms, s, m, h or d")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit as written.
        unit: String,
    },
    /// Not of the form NUMBER UNIT [NUMBER UNIT ...].
    #[error("`{0}` is not a duration: write a number and a unit, such as 30s, 10m or 1h30m")]
    Malformed(String),
    /// Zero, which would make every action time out at once.
    #[error("duration `{0}` is zero: a limit must be greater than zero")]
    Zero(String),
    /// More than a century.
    #[error("duration `{0}` is too large")]
    TooLarge(String),
}

impl HumanDuration {
    /// Parses `1h30m`, `250ms`, `2 h` (spaces between parts are allowed).
    ///
    /// # Errors
    /// Returns a [`DurationError`] saying what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(DurationError::Empty);
        }
        let mut total: u128 = 0;
        let mut rest = trimmed;
        while !rest.is_empty() {
            let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits_end == 0 {
                return Err(DurationError::Malformed(trimmed.to_owned()));
            }
            let number: u128 = rest[..digits_end]
                .parse()
                .map_err(|_| DurationError::TooLarge(trimmed.to_owned()))?;
            rest = rest[digits_end..].trim_start();
            let unit_end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
            let unit = &rest[..unit_end];
            if unit.is_empty() {
                return Err(if rest.is_empty() {
                    DurationError::MissingUnit(trimmed.to_owned())
                } else {
                    DurationError::Malformed(trimmed.to_owned())
                });
            }
            let millis_per_unit: u128 = match unit {
                "ms" => 1,
                "s" | "sec" | "secs" => 1_000,
                "m" | "min" | "mins" => 60_000,
                "h" | "hr" | "hrs" => 3_600_000,
                "d" => 86_400_000,
                other => {
                    return Err(DurationError::UnknownUnit {
                        text: trimmed.to_owned(),
                        unit: other.to_owned(),
                    });
                }
            };
            total = total
                .checked_add(number.saturating_mul(millis_per_unit))
                .ok_or_else(|| DurationError::TooLarge(trimmed.to_owned()))?;
            rest = rest[unit_end..].trim_start();
        }
        const CENTURY_MS: u128 = 100 * 365 * 86_400_000;
        if total == 0 {
            return Err(DurationError::Zero(trimmed.to_owned()));
        }
        if total > CENTURY_MS {
            return Err(DurationError::TooLarge(trimmed.to_owned()));
        }
        Ok(Self(Duration::from_millis(total as u64)))
    }

    /// The duration in whole milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0.as_millis() as u64
    }
}

impl fmt::Display for HumanDuration {
    /// Writes the shortest exact form: `1h30m`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.as_millis();
        let units = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)];
        let mut wrote = false;
        for (name, size) in units {
            if ms >= size {
                write!(f, "{}{name}", ms / size)?;
                ms %= size;
                wrote = true;
            }
        }
        if ms > 0 || !wrote {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30s, 10m or 2h")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                HumanDuration::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(DurationError::MissingUnit(v.to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(DurationError::Malformed(v.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                Err(E::custom(DurationError::Malformed(v.to_string())))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": r"^\s*([0-9]+\s*(ms|s|sec|secs|m|min|mins|h|hr|hrs|d)\s*)+$",
            "description": "A duration: a number and a unit (ms, s, m, h, d), parts may be combined: 1h30m",
            "examples": ["30s", "10m", "2h", "1h30m"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_combinations() {
        let table = [
            ("250ms", 250),
            ("30s", 30_000),
            ("10m", 600_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("1h30m", 5_400_000),
            (" 2 h ", 7_200_000),
            ("1m 30s", 90_000),
        ];
        for (text, ms) in table {
            assert_eq!(HumanDuration::parse(text).map(|d| d.as_millis()), Ok(ms), "{text}");
        }
    }

    #[test]
    fn refuses_bad_durations_with_a_reason() {
        assert!(matches!(
            HumanDuration::parse("5 parsecs"),
            Err(DurationError::UnknownUnit { unit, .. }) if unit == "parsecs"
        ));
        assert_eq!(HumanDuration::parse("5"), Err(DurationError::MissingUnit("5".into())));
        assert_eq!(HumanDuration::parse(""), Err(DurationError::Empty));
        assert_eq!(HumanDuration::parse("0s"), Err(DurationError::Zero("0s".into())));
        assert!(matches!(HumanDuration::parse("-5s"), Err(DurationError::Malformed(_))));
        assert!(matches!(HumanDuration::parse("m5"), Err(DurationError::Malformed(_))));
        assert!(matches!(
            HumanDuration::parse("99999999999999999999999999999999d"),
            Err(DurationError::TooLarge(_))
        ));
    }

    #[test]
    fn display_round_trips() {
        for text in ["250ms", "30s", "10m", "2h", "1d", "1h30m", "1m1s5ms"] {
            let d = HumanDuration::parse(text).expect("valid");
            assert_eq!(d.to_string(), text);
            assert_eq!(HumanDuration::parse(&d.to_string()), Ok(d));
        }
    }
}
