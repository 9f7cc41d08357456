//! A small bash lexer with one job: tell the lexical context (unquoted word, inside `"..."`,
//! inside `'...'`, a heredoc body, arithmetic, ...) at given points of a script, so that a
//! reference to a value can be written there in the form that context needs.
//!
//! The script is the author's text with `:raw` values already inserted; the points are the
//! places of the other references, zero-width boundaries between bytes. A boundary behaves like
//! a piece of a word: lookahead never crosses it (`<<` followed by a reference is a delimiter made
//! of that reference, `\` followed by one escapes nothing we can see), so the answer does not
//! depend on the values.
//!
//! Safety of the rendered script never depends on this lexer being right: every value reaches
//! the command through a parameter expansion of a variable bound before the script, and bash
//! does not re-parse the result of an expansion as syntax. What depends on it is that the value
//! arrives byte-exact, and that references in refused contexts (arithmetic, quoted heredocs) are
//! found. Known approximations, all in rare forms: `case` patterns with an unbalanced `)`
//! inside `$(...)`, nested backticks written as `` \` ``, and `((` at the start of a word
//! that bash would parse as two subshells are lexed as bash would not.

mod expansion;
mod heredoc;

use self::heredoc::Heredoc;

/// The lexical context at a point of a shell script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellContext {
    /// An unquoted word (also in `$(...)`, backticks and unquoted `${VAR:-...}`).
    Word,
    /// Inside `"..."` (or `$"..."`, or `${VAR:-...}` within double quotes).
    DoubleQuoted,
    /// Inside `'...'`.
    SingleQuoted,
    /// Inside `$'...'`.
    AnsiC,
    /// The body of an unquoted heredoc (`<<EOF`): expansions happen, quotes are literal.
    HeredocBody,
    /// A comment: nothing here runs.
    Comment,
    /// Refused: the body of a quoted heredoc (`<<'EOF'`, `<<"EOF"`, `<<\EOF`), where nothing
    /// expands, so no value can get in without becoming part of the text bash reads.
    QuotedHeredoc,
    /// Refused: the delimiter word of a heredoc.
    HeredocDelimiter,
    /// Refused: inside `$((...))`, `((...))` or `$[...]` (also nested in them), where bash
    /// evaluates the text as an expression and `a[$(cmd)]` runs `cmd`.
    Arithmetic,
    /// Refused: right after a `\` that would escape the first character of the reference.
    Escaped,
}

impl ShellContext {
    /// Whether a value cannot be inserted safely here (validation refuses the reference).
    pub fn is_refused(self) -> bool {
        matches!(
            self,
            Self::QuotedHeredoc | Self::HeredocDelimiter | Self::Arithmetic | Self::Escaped
        )
    }
}

/// The context at each boundary of `script`, in order.
///
/// `boundaries` are byte offsets into `script` (0..=len), sorted ascending; several may be
/// equal. The result has one entry per boundary.
pub fn contexts(script: &[u8], boundaries: &[usize]) -> Vec<ShellContext> {
    debug_assert!(boundaries.windows(2).all(|w| w[0] <= w[1]));
    let mut lexer = Lexer {
        s: script,
        pos: 0,
        bounds: boundaries,
        next: 0,
        stack: vec![Frame::Cmd {
            close: Close::End,
            parens: 0,
            word_start: true,
        }],
        pending: Vec::new(),
        escape_pending: false,
        out: Vec::with_capacity(boundaries.len()),
    };
    lexer.run();
    lexer.out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// The whole script.
    End,
    /// `$(...)`.
    Paren,
    /// `` `...` ``.
    Backtick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArithClose {
    /// `$((...))` and `((...))`.
    DoubleParen,
    /// `$[...]`.
    Bracket,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    Cmd {
        close: Close,
        parens: u32,
        word_start: bool,
    },
    Comment,
    Double,
    Single,
    AnsiC,
    Param {
        braces: u32,
    },
    Arith {
        close: ArithClose,
        parens: u32,
    },
    Body {
        doc: Heredoc,
        line_start: bool,
    },
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    bounds: &'a [usize],
    /// Index of the first boundary not yet recorded; its offset is `>= pos`.
    next: usize,
    stack: Vec<Frame>,
    /// Heredocs whose `<<` was read and whose body starts at the next newline.
    pending: Vec<Heredoc>,
    /// A `\` was read directly before a boundary.
    escape_pending: bool,
    out: Vec<ShellContext>,
}

impl Lexer<'_> {
    fn run(&mut self) {
        loop {
            while self.bounds.get(self.next) == Some(&self.pos) {
                let context = self.context();
                self.out.push(context);
                self.next += 1;
                // Only the first of several references at one point follows the `\`.
                self.escape_pending = false;
                self.after_boundary();
            }
            if self.pos >= self.s.len() {
                break;
            }
            self.escape_pending = false;
            self.step();
        }
        // Boundaries past the end (a caller bug) still get an answer.
        while self.out.len() < self.bounds.len() {
            self.out.push(self.context());
        }
    }

    /// The byte `i` ahead of `pos`, unless the end or a boundary comes first.
    fn peek(&self, i: usize) -> Option<u8> {
        let at = self.pos + i;
        if i > 0 && self.bounds.get(self.next).is_some_and(|&b| b <= at) {
            return None;
        }
        self.s.get(at).copied()
    }

    fn top(&mut self) -> &mut Frame {
        self.stack
            .last_mut()
            .expect("the bottom frame is never popped")
    }

    fn pop(&mut self) {
        if self.stack.len() > 1 {
            self.stack.pop();
        }
    }

    fn context(&self) -> ShellContext {
        if self.escape_pending {
            return ShellContext::Escaped;
        }
        if self.stack.iter().any(|f| matches!(f, Frame::Arith { .. })) {
            return ShellContext::Arithmetic;
        }
        for frame in self.stack.iter().rev() {
            return match frame {
                Frame::Cmd { .. } => ShellContext::Word,
                Frame::Comment => ShellContext::Comment,
                Frame::Double => ShellContext::DoubleQuoted,
                Frame::Single => ShellContext::SingleQuoted,
                Frame::AnsiC => ShellContext::AnsiC,
                // `${VAR:-word}` takes the quoting of what it sits in.
                Frame::Param { .. } => continue,
                Frame::Arith { .. } => ShellContext::Arithmetic,
                Frame::Body { doc, .. } if doc.quoted => ShellContext::QuotedHeredoc,
                Frame::Body { .. } => ShellContext::HeredocBody,
            };
        }
        ShellContext::Word
    }

    /// A reference is a piece of a word: what follows it does not start a word or a line.
    fn after_boundary(&mut self) {
        match self.top() {
            Frame::Cmd { word_start, .. } => *word_start = false,
            Frame::Body { line_start, .. } => *line_start = false,
            _ => {}
        }
    }

    /// Consumes one token of the top frame.
    fn step(&mut self) {
        let frame = self.top().clone();
        match frame {
            Frame::Cmd { close, .. } => self.step_cmd(close),
            Frame::Comment => {
                if self.s[self.pos] == b'\n' {
                    // The newline ends the comment and is read by the command frame below
                    // (it may start a heredoc body).
                    self.pop();
                } else {
                    self.pos += 1;
                }
            }
            Frame::Double => match self.s[self.pos] {
                b'"' => {
                    self.pos += 1;
                    self.pop();
                }
                b'\\' => self.escape(),
                _ => {
                    if !self.expansion() {
                        self.pos += 1;
                    }
                }
            },
            Frame::Single => {
                if self.s[self.pos] == b'\'' {
                    self.pop();
                }
                self.pos += 1;
            }
            Frame::AnsiC => match self.s[self.pos] {
                b'\'' => {
                    self.pos += 1;
                    self.pop();
                }
                b'\\' => self.escape(),
                _ => self.pos += 1,
            },
            Frame::Param { braces } => self.step_param(braces),
            Frame::Arith { close, parens } => self.step_arith(close, parens),
            Frame::Body { doc, line_start } => self.step_body(doc, line_start),
        }
    }

    /// `\` and the byte it escapes; before a boundary, the escape applies to the reference.
    fn escape(&mut self) {
        if self.at_bound(self.pos + 1) {
            self.escape_pending = true;
            self.pos += 1;
            return;
        }
        self.pos = (self.pos + 2).min(self.s.len());
    }

    fn at_bound(&self, at: usize) -> bool {
        self.bounds.get(self.next) == Some(&at)
    }

    fn push_cmd(&mut self, close: Close) {
        self.stack.push(Frame::Cmd {
            close,
            parens: 0,
            word_start: true,
        });
    }

    fn set_word_start(&mut self, value: bool) {
        if let Frame::Cmd { word_start, .. } = self.top() {
            *word_start = value;
        }
    }

    fn step_cmd(&mut self, close: Close) {
        let b = self.s[self.pos];
        let Frame::Cmd {
            parens, word_start, ..
        } = *self.top()
        else {
            unreachable!("step_cmd runs on a command frame");
        };
        match b {
            b'\n' => {
                self.pos += 1;
                self.set_word_start(true);
                if !self.pending.is_empty() {
                    let doc = self.pending.remove(0);
                    self.stack.push(Frame::Body {
                        doc,
                        line_start: true,
                    });
                }
            }
            b'#' if word_start => self.stack.push(Frame::Comment),
            b'\'' => {
                self.pos += 1;
                self.set_word_start(false);
                self.stack.push(Frame::Single);
            }
            b'"' => {
                self.pos += 1;
                self.set_word_start(false);
                self.stack.push(Frame::Double);
            }
            b'\\' => {
                self.set_word_start(false);
                self.escape();
            }
            b'`' if close == Close::Backtick => {
                self.pos += 1;
                self.pop();
            }
            b'$' if self.peek(1) == Some(b'\'') => {
                self.pos += 2;
                self.set_word_start(false);
                self.stack.push(Frame::AnsiC);
            }
            b'$' if self.peek(1) == Some(b'"') => {
                self.pos += 2;
                self.set_word_start(false);
                self.stack.push(Frame::Double);
            }
            b'(' if word_start && self.peek(1) == Some(b'(') => {
                self.pos += 2;
                self.stack.push(Frame::Arith {
                    close: ArithClose::DoubleParen,
                    parens: 0,
                });
            }
            b'(' => {
                self.pos += 1;
                if let Frame::Cmd {
                    parens, word_start, ..
                } = self.top()
                {
                    *parens += 1;
                    *word_start = true;
                }
            }
            b')' => {
                self.pos += 1;
                if parens == 0 && close == Close::Paren {
                    self.pop();
                } else if let Frame::Cmd {
                    parens, word_start, ..
                } = self.top()
                {
                    *parens = parens.saturating_sub(1);
                    *word_start = true;
                }
            }
            b'<' if self.peek(1) == Some(b'<') && self.peek(2) == Some(b'<') => {
                // A here-string: its word is an ordinary word.
                self.pos += 3;
                self.set_word_start(true);
            }
            b'<' if self.peek(1) == Some(b'<') => {
                self.pos += 2;
                self.heredoc_operator();
                self.set_word_start(true);
            }
            b' ' | b'\t' | b';' | b'&' | b'|' | b'<' | b'>' => {
                self.pos += 1;
                self.set_word_start(true);
            }
            _ => {
                self.set_word_start(false);
                if !self.expansion() {
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
