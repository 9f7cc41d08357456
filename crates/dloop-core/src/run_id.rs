//! Run ids (`<loop>-<YYYYMMDDTHHMMSS>-<4 hex>`), loop-name validation, and resolving what a
//! user typed for RUN into ids.
//!
//! Invariant: a [`RunId`] and every name accepted by [`validate_loop_name`] are safe as one path
//! component: ASCII letters, digits, `_`, `.` and `-` only, never starting with `.` or `-`,
//! never containing `..`, at most 64 characters for the name. This is what keeps a loop named
//! `../../etc/passwd` from escaping `.loops/`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::timestamp::Timestamp;

/// The longest loop name, in characters (all ASCII, so also bytes).
pub const MAX_LOOP_NAME_LEN: usize = 64;

/// Length of the `YYYYMMDDTHHMMSS` part of a run id.
const TIME_LEN: usize = 15;
/// Length of the hex suffix of a run id.
const SUFFIX_LEN: usize = 4;

const NAME_RULE: &str = "use ASCII letters, digits, `_`, `.` and `-`, start with a letter or \
                         digit, no `..`, at most 64 characters";

/// A loop name or run id that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    /// The loop name is empty.
    #[error("loop name is empty: {NAME_RULE}")]
    Empty,
    /// The loop name is longer than [`MAX_LOOP_NAME_LEN`].
    #[error("loop name is {len} characters long: {NAME_RULE}")]
    TooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The loop name has a character that is not allowed (also `/`, `\`, NUL, non-ASCII).
    #[error("loop name `{name}` contains {found:?}: {NAME_RULE}")]
    InvalidChar {
        /// The name, with control characters escaped by `{:?}` when shown.
        name: String,
        /// The first character that is not allowed.
        found: char,
    },
    /// The loop name starts with `.` or `-`.
    #[error("loop name `{name}` starts with {found:?}: {NAME_RULE}")]
    BadStart {
        /// The name.
        name: String,
        /// Its first character.
        found: char,
    },
    /// The loop name contains `..`.
    #[error("loop name `{name}` contains `..`: {NAME_RULE}")]
    DotDot {
        /// The name.
        name: String,
    },
    /// The timestamp does not fit the four-digit year of a run id.
    #[error("timestamp {millis} ms is past the year 9999: check the system clock")]
    TimestampOutOfRange {
        /// The timestamp, in milliseconds since the epoch.
        millis: u64,
    },
    /// Text that is not a run id.
    #[error("`{text}` is not a run id ({reason}): run ids look like `LOOP-YYYYMMDDTHHMMSS-abcd`")]
    InvalidRunId {
        /// The text given (truncated to 200 characters).
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Checks that `name` can be a loop name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64 characters,
/// without `..`. Rejects `/`, `\`, NUL, whitespace and any non-ASCII character (lookalikes).
pub fn validate_loop_name(name: &str) -> Result<(), NameError> {
    let Some(first) = name.chars().next() else {
        return Err(NameError::Empty);
    };
    if let Some(found) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError::InvalidChar {
            name: shorten(name),
            found,
        });
    }
    // All ASCII from here, so bytes are characters.
    if name.len() > MAX_LOOP_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if !first.is_ascii_alphanumeric() {
        return Err(NameError::BadStart {
            name: name.to_owned(),
            found: first,
        });
    }
    if name.contains("..") {
        return Err(NameError::DotDot {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// At most 200 characters of `text`, for error messages.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// The id of one run: `<loop>-<YYYYMMDDTHHMMSS>-<4 lowercase hex>`, e.g.
/// `fix-tests-20261121T102710-0a3f`. Always valid; serialized as its string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(String);

impl RunId {
    /// The id of a run of `loop_name` started at `ts`, told apart from others in the same
    /// second by `suffix`. Errors when the loop name is not valid or `ts` is past year 9999.
    pub fn new(loop_name: &str, ts: Timestamp, suffix: u16) -> Result<RunId, NameError> {
        validate_loop_name(loop_name)?;
        let time = ts.compact();
        if time.len() != TIME_LEN {
            return Err(NameError::TimestampOutOfRange {
                millis: ts.as_millis(),
            });
        }
        Ok(RunId(format!("{loop_name}-{time}-{suffix:04x}")))
    }

    /// Reads a whole run id, checking every part (the loop name as [`validate_loop_name`] does).
    pub fn parse(text: &str) -> Result<RunId, NameError> {
        let invalid = |reason: &str| NameError::InvalidRunId {
            text: shorten(text),
            reason: reason.to_owned(),
        };
        let bytes = text.as_bytes();
        // name + '-' + time + '-' + suffix
        let tail = 1 + TIME_LEN + 1 + SUFFIX_LEN;
        if !text.is_ascii() {
            return Err(invalid("it has non-ASCII characters"));
        }
        if bytes.len() < tail + 1 {
            return Err(invalid("too short"));
        }
        let name_end = bytes.len() - tail;
        let time = &text[name_end + 1..name_end + 1 + TIME_LEN];
        let suffix = &text[bytes.len() - SUFFIX_LEN..];
        if bytes[name_end] != b'-' || bytes[bytes.len() - SUFFIX_LEN - 1] != b'-' {
            return Err(invalid("missing `-` separators"));
        }
        let time_ok = time.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            _ => b.is_ascii_digit(),
        });
        if !time_ok {
            return Err(invalid("the time is not YYYYMMDDTHHMMSS"));
        }
        if !suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid("the suffix is not 4 lowercase hex digits"));
        }
        validate_loop_name(&text[..name_end])?;
        Ok(RunId(text.to_owned()))
    }

    /// The loop's name: the id without its time and suffix.
    pub fn loop_name(&self) -> &str {
        &self.0[..self.0.len() - (2 + TIME_LEN + SUFFIX_LEN)]
    }

    /// The `YYYYMMDDTHHMMSS` part (UTC), which sorts like the time it names.
    pub fn compact_time(&self) -> &str {
        let end = self.0.len() - 1 - SUFFIX_LEN;
        &self.0[end - TIME_LEN..end]
    }

    /// The 4-hex-digit suffix.
    pub fn suffix(&self) -> u16 {
        // Invariant: the constructors checked the last four characters are lowercase hex.
        u16::from_str_radix(&self.0[self.0.len() - SUFFIX_LEN..], 16)
            .expect("a RunId's suffix is checked to be 4 hex digits")
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RunId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for RunId {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RunId::parse(text)
    }
}

impl Serialize for RunId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        RunId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What a RUN argument resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMatch<'a> {
    /// Exactly one run.
    One(&'a RunId),
    /// Several runs, newest first: all runs of a loop named by the query, or the runs an
    /// ambiguous prefix matches. Tell them apart with `ids.iter().all(|id| id.loop_name() ==
    /// query)`.
    Many(Vec<&'a RunId>),
    /// No run.
    None,
}

/// Resolves `query` against `ids`. Precedence:
///
/// 1. a whole id equal to `query` gives [`RunMatch::One`];
/// 2. else a loop name: all runs of the loop named exactly `query`, newest first (by the time
///    in the id, then the suffix) — [`RunMatch::One`] when it has a single run;
/// 3. else a prefix: the ids starting with `query` (one gives [`RunMatch::One`], several
///    [`RunMatch::Many`], newest first).
///
/// An empty query matches nothing. So `fix` names the loop `fix` even when a loop `fix-tests`
/// exists; its runs are still reachable by a longer prefix (`fix-tests`).
pub fn match_runs<'a>(query: &str, ids: &'a [RunId]) -> RunMatch<'a> {
    if query.is_empty() {
        return RunMatch::None;
    }
    if let Some(id) = ids.iter().find(|id| id.as_str() == query) {
        return RunMatch::One(id);
    }
    let of_loop: Vec<&RunId> = ids.iter().filter(|id| id.loop_name() == query).collect();
    if !of_loop.is_empty() {
        return one_or_many(of_loop);
    }
    one_or_many(
        ids.iter()
            .filter(|id| id.as_str().starts_with(query))
            .collect(),
    )
}

fn one_or_many(mut ids: Vec<&RunId>) -> RunMatch<'_> {
    match ids.len() {
        0 => RunMatch::None,
        1 => RunMatch::One(ids[0]),
        _ => {
            ids.sort_by(|a, b| {
                (b.compact_time(), b.suffix(), b.as_str()).cmp(&(
                    a.compact_time(),
                    a.suffix(),
                    a.as_str(),
                ))
            });
            RunMatch::Many(ids)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-21T10:27:10.123Z
    const TS: Timestamp = Timestamp::from_millis(1_795_256_830_123);

    #[test]
    fn new_formats_the_id() {
        let id = RunId::new("fix-tests", TS, 0x0a3f).expect("valid");
        assert_eq!(id.as_str(), format!("fix-tests-{}-0a3f", TS.compact()));
        assert_eq!(id.loop_name(), "fix-tests");
        assert_eq!(id.compact_time(), TS.compact());
        assert_eq!(id.suffix(), 0x0a3f);
        assert_eq!(id.to_string(), id.as_str());
        assert_eq!(RunId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(RunId::new("a", TS, 0xffff).expect("valid").suffix(), 0xffff);
        assert!(matches!(
            RunId::new("a", Timestamp::from_millis(u64::MAX), 0),
            Err(NameError::TimestampOutOfRange { .. })
        ));
        assert!(matches!(
            RunId::new("../x", TS, 1),
            Err(NameError::InvalidChar { found: '/', .. })
        ));
    }

    #[test]
    fn loop_name_table() {
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        let ok = [
            "a",
            "A1",
            "fix-tests",
            "fix_tests.v2",
            "0",
            "a-",
            "a.b",
            long.as_str(),
        ];
        for name in ok {
            assert_eq!(validate_loop_name(name), Ok(()), "{name:?}");
        }
        let bad = [
            "",
            ".",
            "..",
            "../../etc/passwd",
            "a/../b",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "..\\x",
            "C:\\x",
            "a..b",
            ".hidden",
            "-rf",
            "_x",
            "a b",
            "a\0b",
            "a\nb",
            "ａ",                  // fullwidth a
            "fix\u{2215}x",        // division slash
            "fix\u{2024}\u{2024}", // one dot leader, twice
            "café",
            "a:b",
            "a*",
            too_long.as_str(),
        ];
        for name in bad {
            let err = validate_loop_name(name).expect_err(name);
            assert!(err.to_string().contains("use ASCII letters"), "{err}");
        }
    }

    #[test]
    fn parse_table() {
        let ok = [
            "fix-tests-20261121T102710-0a3f",
            "a-00000101T000000-ffff",
            "x.y_z-20261121T102710-0000",
            "a-b-c-20261121T102710-1234",
        ];
        for text in ok {
            let id = RunId::parse(text).expect(text);
            assert_eq!(id.as_str(), text);
        }
        assert_eq!(
            RunId::parse("a-b-c-20261121T102710-1234")
                .expect("valid")
                .loop_name(),
            "a-b-c"
        );
        let bad = [
            "",
            "fix-tests",
            "-20261121T102710-0a3f",
            "fix-20261121T102710-0A3F",
            "fix-20261121X102710-0a3f",
            "fix-2026112T1102710-0a3f",
            "fix-20261121T102710-0a3",
            "fix-20261121T102710-0a3ff",
            "fix_20261121T102710_0a3f",
            "../x-20261121T102710-0a3f",
            "a/b-20261121T102710-0a3f",
            "é-20261121T102710-0a3f",
            "fix-20261121T10271é-0a3f",
            "fix-tests-20261121T102710-0a3f/../../x",
        ];
        for text in bad {
            assert!(RunId::parse(text).is_err(), "{text:?} should not parse");
        }
    }

    #[test]
    fn serde_is_a_string() {
        let id = RunId::parse("fix-20261121T102710-0a3f").expect("valid");
        let json = serde_json::to_string(&id).expect("serializes");
        assert_eq!(json, "\"fix-20261121T102710-0a3f\"");
        assert_eq!(serde_json::from_str::<RunId>(&json).expect("reads"), id);
        assert!(serde_json::from_str::<RunId>("\"../etc-20261121T102710-0a3f\"").is_err());
    }

    fn ids(texts: &[&str]) -> Vec<RunId> {
        texts.iter().map(|t| RunId::parse(t).expect(t)).collect()
    }

    fn names(m: RunMatch<'_>) -> Vec<&str> {
        match m {
            RunMatch::One(id) => vec![id.as_str()],
            RunMatch::Many(ids) => ids.iter().map(|id| id.as_str()).collect(),
            RunMatch::None => vec![],
        }
    }

    #[test]
    fn match_table() {
        let all = ids(&[
            "fix-20261121T102710-0001",
            "fix-20261122T000000-0000",
            "fix-20261121T102710-00ff",
            "fix-tests-20261121T102710-0a3f",
            "lint-20260101T000000-beef",
        ]);
        let cases: &[(&str, &[&str], bool)] = &[
            // exact id
            (
                "fix-20261121T102710-0001",
                &["fix-20261121T102710-0001"],
                true,
            ),
            // loop name: newest first, by time then suffix; not `fix-tests`
            (
                "fix",
                &[
                    "fix-20261122T000000-0000",
                    "fix-20261121T102710-00ff",
                    "fix-20261121T102710-0001",
                ],
                false,
            ),
            ("fix-tests", &["fix-tests-20261121T102710-0a3f"], true),
            ("lint", &["lint-20260101T000000-beef"], true),
            // unique prefix
            ("fix-t", &["fix-tests-20261121T102710-0a3f"], true),
            ("lint-2026", &["lint-20260101T000000-beef"], true),
            (
                "fix-20261121T102710-0",
                &["fix-20261121T102710-00ff", "fix-20261121T102710-0001"],
                false,
            ),
            // ambiguous prefix, newest first
            (
                "f",
                &[
                    "fix-20261122T000000-0000",
                    "fix-tests-20261121T102710-0a3f",
                    "fix-20261121T102710-00ff",
                    "fix-20261121T102710-0001",
                ],
                false,
            ),
            ("nope", &[], false),
            ("", &[], false),
        ];
        for (query, expected, one) in cases {
            let m = match_runs(query, &all);
            assert_eq!(matches!(m, RunMatch::One(_)), *one, "{query:?}: {m:?}");
            assert_eq!(names(m), *expected, "{query:?}");
        }
        assert_eq!(match_runs("fix", &[]), RunMatch::None);
    }
}
