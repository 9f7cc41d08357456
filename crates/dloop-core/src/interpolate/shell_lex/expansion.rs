//! Expansions for the shell lexer: `$(...)`, backticks, `$((...))`, `$[...]` and `${...}`,
//! and stepping inside parameter expansions and arithmetic.
//!
//! Invariant: each expansion pushes exactly one frame and pops it at its own closing token, so
//! the frame stack mirrors the nesting bash sees.

use super::{ArithClose, Close, Frame, Lexer};

impl Lexer<'_> {
    /// `$(`, `$((`, `$[`, `${` and backticks, where the top frame allows expansions.
    /// Returns whether one was consumed.
    pub(super) fn expansion(&mut self) -> bool {
        match (self.s[self.pos], self.peek(1), self.peek(2)) {
            (b'`', _, _) => {
                self.pos += 1;
                self.push_cmd(Close::Backtick);
            }
            (b'$', Some(b'('), Some(b'(')) => {
                self.pos += 3;
                self.stack.push(Frame::Arith {
                    close: ArithClose::DoubleParen,
                    parens: 0,
                });
            }
            (b'$', Some(b'('), _) => {
                self.pos += 2;
                self.push_cmd(Close::Paren);
            }
            (b'$', Some(b'['), _) => {
                self.pos += 2;
                self.stack.push(Frame::Arith {
                    close: ArithClose::Bracket,
                    parens: 0,
                });
            }
            (b'$', Some(b'{'), _) => {
                self.pos += 2;
                self.stack.push(Frame::Param { braces: 0 });
            }
            _ => return false,
        }
        true
    }

    pub(super) fn step_param(&mut self, braces: u32) {
        let inside_double = self
            .stack
            .iter()
            .rev()
            .find(|f| !matches!(f, Frame::Param { .. }))
            .is_some_and(|f| matches!(f, Frame::Double | Frame::Body { .. }));
        match self.s[self.pos] {
            b'}' if braces == 0 => {
                self.pos += 1;
                self.pop();
            }
            b'}' => {
                self.pos += 1;
                *self.top() = Frame::Param { braces: braces - 1 };
            }
            b'{' => {
                self.pos += 1;
                *self.top() = Frame::Param { braces: braces + 1 };
            }
            b'\\' => self.escape(),
            b'"' => {
                self.pos += 1;
                self.stack.push(Frame::Double);
            }
            b'\'' if !inside_double => {
                self.pos += 1;
                self.stack.push(Frame::Single);
            }
            _ => {
                if !self.expansion() {
                    self.pos += 1;
                }
            }
        }
    }

    pub(super) fn step_arith(&mut self, close: ArithClose, parens: u32) {
        let b = self.s[self.pos];
        let set = |lexer: &mut Self, parens| {
            *lexer.top() = Frame::Arith { close, parens };
        };
        match (close, b) {
            (ArithClose::DoubleParen, b')') if parens == 0 && self.peek(1) == Some(b')') => {
                self.pos += 2;
                self.pop();
            }
            (ArithClose::Bracket, b']') if parens == 0 => {
                self.pos += 1;
                self.pop();
            }
            (_, b'(') => {
                self.pos += 1;
                set(self, parens + 1);
            }
            (_, b')') => {
                self.pos += 1;
                set(self, parens.saturating_sub(1));
            }
            (_, b'\\') => self.escape(),
            _ => {
                if !self.expansion() {
                    self.pos += 1;
                }
            }
        }
    }
}
