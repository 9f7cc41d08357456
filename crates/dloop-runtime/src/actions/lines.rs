//! Splits a chunked byte stream into lines, for runners that parse line-oriented output (the
//! agents' JSON Lines streams) as it arrives.
//!
//! Invariant: every byte fed is handed out exactly once, in order, as part of one line; a line
//! longer than the limit is handed out in pieces of the limit (so a hostile stream cannot make
//! dloop buffer without bound), and what is left when the stream ends comes out of
//! [`LineSplitter::finish`].

/// Buffers partial lines across chunks.
#[derive(Debug)]
pub struct LineSplitter {
    partial: Vec<u8>,
    limit: usize,
}

impl LineSplitter {
    /// A splitter that hands out lines of at most `limit` bytes (without the newline).
    pub fn new(limit: usize) -> Self {
        Self {
            partial: Vec::new(),
            limit: limit.max(1),
        }
    }

    /// Feeds a chunk; calls `line` for every line it completes (without its `\n`).
    pub fn feed(&mut self, mut bytes: &[u8], line: &mut dyn FnMut(&[u8])) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                self.emit_bounded(&bytes[..end], line);
            } else {
                self.partial.extend_from_slice(&bytes[..end]);
                let whole = std::mem::take(&mut self.partial);
                self.emit_bounded(&whole, line);
            }
            bytes = &bytes[end + 1..];
        }
        self.partial.extend_from_slice(bytes);
        while self.partial.len() > self.limit {
            let rest = self.partial.split_off(self.limit);
            line(&self.partial);
            self.partial = rest;
        }
    }

    /// Hands out the unterminated last line, if any.
    pub fn finish(&mut self, line: &mut dyn FnMut(&[u8])) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            line(&rest);
        }
    }

    fn emit_bounded(&self, text: &[u8], line: &mut dyn FnMut(&[u8])) {
        for piece in text.chunks(self.limit) {
            line(piece);
        }
        if text.is_empty() {
            line(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], limit: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut splitter = LineSplitter::new(limit);
        for chunk in chunks {
            splitter.feed(chunk, &mut |l| out.push(l.to_vec()));
        }
        splitter.finish(&mut |l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_across_chunks_come_out_whole() {
        assert_eq!(
            split(&[b"a", b"b\ncd", b"\n\nlast"], 100),
            vec![
                b"ab".to_vec(),
                b"cd".to_vec(),
                b"".to_vec(),
                b"last".to_vec()
            ]
        );
    }

    #[test]
    fn an_endless_line_is_cut_at_the_limit_and_nothing_is_lost() {
        let out = split(&[b"0123456789", b"abc\nx"], 4);
        let joined: Vec<u8> = out.concat();
        assert_eq!(joined, b"0123456789abcx");
        assert!(out.iter().all(|l| l.len() <= 4));
    }
}
