//! One line of `events.jsonl`: encoding a [`Record`] with its checksum, and decoding and
//! verifying a line. Decoding never panics; it is on the replay path, so it checks the fixed-size
//! checksum suffix first and parses JSON once.
//!
//! # Line format (version 1)
//!
//! ```text
//! {"seq":N,"ts":"2026-11-21T10:27:10.123Z","type":"state_entered",<fields>[,"_more":true],"crc":"1a2b3c4d"}\n
//! ```
//!
//! | part            | meaning                                                                   |
//! |-----------------|---------------------------------------------------------------------------|
//! | `seq`           | u64, first key; 1 for the first record, +1 per line, no gaps              |
//! | `ts`            | RFC 3339 UTC with milliseconds ([`Timestamp`](dloop_core::Timestamp))     |
//! | `type`          | the [`Event`](dloop_core::Event) variant in snake_case                    |
//! | `<fields>`      | the variant's fields; readers ignore fields they do not know              |
//! | `_more`         | store-level, optional: `true` on every line of a batch except its last    |
//! | `crc`           | always last: CRC32C of every byte of the line before `,"crc":`, 8 lowercase hex digits |
//! | `\n`            | every line ends with one; a line without it is a torn write               |
//!
//! `_more` makes a batch all-or-nothing: trailing lines that carry `_more` without the batch's
//! closing line are an unfinished write and are cut on open like a torn line. A log written
//! without `_more` reads as one-record batches. The key `_more` is reserved: no event may have a
//! field of that name.
//!
//! The line is the serde_json encoding of [`Record`] with its closing `}` replaced by
//! `[,"_more":true],"crc":"…"}`, so the checksum suffix has a fixed length of 18 bytes.

use dloop_core::Record;

use crate::error::Damage;

/// `,"crc":"` + 8 hex digits + `"}`.
const CRC_SUFFIX_LEN: usize = 18;
const CRC_KEY: &[u8] = br#","crc":""#;
const MORE_FIELD: &[u8] = br#","_more":true"#;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A decoded, verified line.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedLine {
    /// The record.
    pub record: Record,
    /// True when more lines of the same batch follow (`_more`).
    pub more: bool,
    /// The line's checksum.
    pub crc: u32,
}

/// Appends `record`'s line (with its `\n`) to `buf` and returns its checksum. `more` marks a
/// line that is not the last of its batch.
pub fn encode_into(record: &Record, more: bool, buf: &mut Vec<u8>) -> serde_json::Result<u32> {
    let start = buf.len();
    serde_json::to_writer(&mut *buf, record)?;
    // Invariant: a struct serializes as a JSON object, so the last byte is its closing brace.
    debug_assert_eq!(buf.last(), Some(&b'}'));
    buf.pop();
    if more {
        buf.extend_from_slice(MORE_FIELD);
    }
    let crc = crc32c::crc32c(&buf[start..]);
    buf.extend_from_slice(CRC_KEY);
    for shift in (0..8).rev() {
        buf.push(HEX[((crc >> (shift * 4)) & 0xf) as usize]);
    }
    buf.extend_from_slice(b"\"}\n");
    Ok(crc)
}

/// Encodes one record as a whole line (with `\n`).
pub fn encode(record: &Record, more: bool) -> serde_json::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(256);
    encode_into(record, more, &mut buf)?;
    Ok(buf)
}

fn parse_hex(digits: &[u8]) -> Option<u32> {
    let mut value = 0u32;
    for &d in digits {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u32::from(nibble);
    }
    Some(value)
}

/// Verifies the checksum of `line` (without its `\n`) and returns the bytes it covers and the
/// checksum.
fn checked_body(line: &[u8]) -> Result<(&[u8], u32), Damage> {
    if line.len() < CRC_SUFFIX_LEN + 2 || !line.ends_with(b"\"}") {
        return Err(Damage::MissingChecksum);
    }
    // The suffix has a fixed length, so the last `,"crc":"` is at this exact position.
    let split = line.len() - CRC_SUFFIX_LEN;
    let (body, suffix) = line.split_at(split);
    if !suffix.starts_with(CRC_KEY) {
        return Err(Damage::MissingChecksum);
    }
    let expected =
        parse_hex(&suffix[CRC_KEY.len()..CRC_KEY.len() + 8]).ok_or(Damage::MissingChecksum)?;
    if crc32c::crc32c(body) != expected {
        return Err(Damage::BadChecksum);
    }
    Ok((body, expected))
}

/// Decodes one line. `line` is the line without its trailing `\n` (the caller checks that the
/// newline was there: a line without one is [`Damage::Torn`]).
pub fn decode_line(line: &[u8]) -> Result<DecodedLine, Damage> {
    let (body, crc) = checked_body(line)?;
    let more = body.ends_with(MORE_FIELD);
    // The whole line is valid JSON; `crc` and `_more` are unknown keys the record ignores.
    let record: Record =
        serde_json::from_slice(line).map_err(|e| Damage::BadJson(e.to_string()))?;
    Ok(DecodedLine { record, more, crc })
}

/// `Some(more)` when `line` (without `\n`) carries a valid checksum, with its `_more` flag;
/// `None` otherwise. Lets a reader skip a line without parsing its JSON.
pub(crate) fn checked_more(line: &[u8]) -> Option<bool> {
    checked_body(line)
        .ok()
        .map(|(body, _)| body.ends_with(MORE_FIELD))
}

/// True when `line` (without `\n`) carries a valid checksum, whatever its JSON says. Used to tell
/// a damaged tail (nothing valid after it) from corruption (valid records after it).
pub fn has_valid_checksum(line: &[u8]) -> bool {
    checked_body(line).is_ok()
}

#[cfg(test)]
mod tests {
    use dloop_core::{Event, Timestamp};

    use super::*;

    fn rec(seq: u64) -> Record {
        Record {
            seq,
            ts: Timestamp::from_millis(1_795_170_430_123),
            event: Event::LogRepaired {
                dropped_bytes: seq,
                reason: "x \"quoted\"\n".into(),
            },
        }
    }

    #[test]
    fn round_trips_with_and_without_more() {
        for more in [false, true] {
            let line = encode(&rec(7), more).expect("encodes");
            assert_eq!(line.last(), Some(&b'\n'));
            let text = std::str::from_utf8(&line).expect("utf8");
            assert!(
                text.starts_with(
                    r#"{"seq":7,"ts":"2026-11-20T10:27:10.123Z","type":"log_repaired""#
                )
            );
            let decoded = decode_line(&line[..line.len() - 1]).expect("decodes");
            assert_eq!((decoded.record, decoded.more), (rec(7), more));
        }
    }

    #[test]
    fn checksum_covers_bytes_before_crc_key() {
        let line = encode(&rec(1), false).expect("encodes");
        let text = std::str::from_utf8(&line).expect("utf8");
        let at = text.rfind(r#","crc":""#).expect("has crc");
        let crc = format!("{:08x}", crc32c::crc32c(&line[..at]));
        assert_eq!(&text[at + 8..at + 16], crc);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let line = encode(&rec(3), true).expect("encodes");
        let line = &line[..line.len() - 1];
        for i in 0..line.len() {
            let mut bad = line.to_vec();
            bad[i] ^= 0x20;
            assert!(decode_line(&bad).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for junk in [
            &b""[..],
            b"}",
            b"\"}",
            b",\"crc\":\"zzzzzzzz\"}",
            b"{\"seq\":1,\"crc\":\"00000000\"}",
        ] {
            assert!(decode_line(junk).is_err());
        }
    }
}
