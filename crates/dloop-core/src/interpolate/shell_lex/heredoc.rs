//! Heredocs for the shell lexer: reading the `<<`/`<<-` operator and its delimiter word, and
//! stepping through the body until the delimiter line.
//!
//! Invariant: a body is quoted (no expansions) when any part of its delimiter word was quoted,
//! as in bash; the body ends only at a line that is exactly the delimiter (after leading tabs
//! with `<<-`).

use super::{Frame, Lexer, ShellContext};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Heredoc {
    pub(super) delimiter: Vec<u8>,
    pub(super) strip_tabs: bool,
    pub(super) quoted: bool,
}

impl Lexer<'_> {
    /// After `<<`: an optional `-`, blanks, and the delimiter word.
    pub(super) fn heredoc_operator(&mut self) {
        let strip_tabs = self.peek(0) == Some(b'-') && !self.at_bound(self.pos);
        if strip_tabs {
            self.pos += 1;
        }
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t')) && !self.at_bound(self.pos) {
            self.pos += 1;
        }
        let mut delimiter = Vec::new();
        let mut quoted = false;
        let mut quote: Option<u8> = None;
        loop {
            while self.at_bound(self.pos) {
                self.out.push(ShellContext::HeredocDelimiter);
                self.next += 1;
            }
            let Some(&b) = self.s.get(self.pos) else {
                break;
            };
            match (quote, b) {
                (Some(q), b) if b == q => {
                    quote = None;
                    self.pos += 1;
                }
                (Some(b'"'), b'\\') if matches!(self.peek(1), Some(b'"' | b'\\' | b'$' | b'`')) => {
                    delimiter.push(self.s[self.pos + 1]);
                    self.pos += 2;
                }
                (Some(_), b) => {
                    delimiter.push(b);
                    self.pos += 1;
                }
                (None, b'\'' | b'"') => {
                    quoted = true;
                    quote = Some(b);
                    self.pos += 1;
                }
                (None, b'\\') => {
                    quoted = true;
                    if let Some(next) = self.peek(1) {
                        delimiter.push(next);
                        self.pos += 2;
                    } else {
                        self.pos += 1;
                    }
                }
                (None, b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')') => {
                    break;
                }
                (None, b) => {
                    delimiter.push(b);
                    self.pos += 1;
                }
            }
        }
        self.pending.push(Heredoc {
            delimiter,
            strip_tabs,
            quoted,
        });
    }

    pub(super) fn step_body(&mut self, doc: Heredoc, line_start: bool) {
        if line_start {
            if let Frame::Body { line_start, .. } = self.top() {
                *line_start = false;
            }
            if self.ends_body(&doc) {
                self.pop();
                if !self.pending.is_empty() {
                    let doc = self.pending.remove(0);
                    self.stack.push(Frame::Body {
                        doc,
                        line_start: true,
                    });
                }
                return;
            }
        }
        match self.s[self.pos] {
            b'\n' => {
                self.pos += 1;
                if let Frame::Body { line_start, .. } = self.top() {
                    *line_start = true;
                }
            }
            _ if doc.quoted => self.pos += 1,
            b'\\' => self.escape(),
            _ => {
                if !self.expansion() {
                    self.pos += 1;
                }
            }
        }
    }

    /// At a body line's start: whether the line is the delimiter; if so it is consumed with
    /// its newline.
    fn ends_body(&mut self, doc: &Heredoc) -> bool {
        let mut i = 0;
        if doc.strip_tabs {
            while self.peek(i) == Some(b'\t') {
                i += 1;
            }
        }
        for &d in &doc.delimiter {
            if self.peek(i) != Some(d) {
                return false;
            }
            i += 1;
        }
        match self.peek(i) {
            Some(b'\n') => i += 1,
            None if self.pos + i >= self.s.len() => {}
            _ => return false,
        }
        self.pos += i;
        true
    }
}
