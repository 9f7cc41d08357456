//! `command` profiles: any program, plain-text output. The final text is the whole of stdout,
//! bounded to its last [`MAX_FINAL_TEXT`] bytes (an answer ends there, and so does a
//! `CONTEXT_HANDOFF:` line); the outcome comes from the exit status alone
//! (`classify::classify_command`).

use super::stream::{StreamFacts, StreamParser};
use crate::actions::AgentActivity;

/// The most of a command's stdout kept as its final text (the end of it).
pub const MAX_FINAL_TEXT: usize = 256 * 1024;

/// Keeps the end of a command's stdout.
#[derive(Debug, Default)]
pub(crate) struct CommandParser {
    facts: StreamFacts,
    text: String,
    /// Bytes dropped from the front.
    cut: u64,
}

impl CommandParser {
    fn trim_front(&mut self, keep: usize) {
        if self.text.len() <= keep {
            return;
        }
        let mut start = self.text.len() - keep;
        while !self.text.is_char_boundary(start) {
            start += 1;
        }
        self.cut += start as u64;
        self.text.drain(..start);
    }
}

impl StreamParser for CommandParser {
    fn line(&mut self, line: &[u8], _activity: &mut dyn FnMut(AgentActivity)) {
        self.text.push_str(&String::from_utf8_lossy(line));
        self.text.push('\n');
        // Trim in halves, so keeping the tail costs amortized O(1) per byte.
        if self.text.len() > 2 * MAX_FINAL_TEXT {
            self.trim_front(MAX_FINAL_TEXT);
        }
    }

    fn finish(&mut self) {
        self.trim_front(MAX_FINAL_TEXT);
        let body = self.text.trim_end();
        self.facts.final_text = Some(if self.cut > 0 {
            format!("[... {} bytes cut ...]\n{body}", self.cut)
        } else {
            body.to_owned()
        });
    }

    fn facts(&self) -> &StreamFacts {
        &self.facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_text_is_stdout_bounded_to_its_end() {
        let mut p = CommandParser::default();
        p.line(b"hello", &mut |_| {});
        p.line(b"world", &mut |_| {});
        p.finish();
        assert_eq!(p.facts().final_text.as_deref(), Some("hello\nworld"));

        let mut p = CommandParser::default();
        let line = vec![b'x'; 1000];
        for _ in 0..1000 {
            p.line(&line, &mut |_| {});
        }
        p.line(b"CONTEXT_HANDOFF: next", &mut |_| {});
        p.finish();
        let text = p.facts().final_text.clone().expect("text");
        assert!(text.starts_with("[... "), "{}", &text[..40]);
        assert!(text.ends_with("CONTEXT_HANDOFF: next"));
        assert!(text.len() <= MAX_FINAL_TEXT + 40);
    }
}
