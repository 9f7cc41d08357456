//! Problems found in a loop file: [`Diagnostic`] with a [`Span`] and a help line, "did you
//! mean" suggestions ([`suggest`]), and a plain-text, rustc-like [`render`]er.

use std::fmt::Write as _;

use serde::Serialize;

/// A place in a loop file's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1, counted in chars.
    pub column: u32,
    /// Length in bytes (may run past the end of the line; renderers clamp it).
    pub len: usize,
}

/// One problem in a loop file. Messages are lowercase with no final period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Where the problem is, when it has a place.
    pub span: Option<Span>,
    /// What is wrong.
    pub message: String,
    /// What to do about it, such as "did you mean `on`?".
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without help.
    pub fn new(span: Option<Span>, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
            help: None,
        }
    }

    /// `LINE:COL message` (just the message without a span): one line, for tests and logs.
    pub fn located(&self) -> String {
        let at = self
            .span
            .map(|s| format!("{}:{} ", s.line, s.column))
            .unwrap_or_default();
        format!("{at}{}", self.message)
    }

    /// Adds (or replaces) the help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a "did you mean" help when `suggestion` is some.
    #[must_use]
    pub fn with_suggestion(mut self, suggestion: Option<&str>) -> Self {
        if let Some(s) = suggestion {
            self.help = Some(format!("did you mean `{s}`?"));
        }
        self
    }
}

/// Maps byte offsets of one source text to lines and columns.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    /// Byte offset where each line starts; always holds 0.
    starts: Vec<usize>,
}

impl LineIndex {
    /// Indexes the line starts of `source`.
    pub(crate) fn new(source: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            source
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self { starts }
    }

    /// The span of `len` bytes at `offset` (clamped to the source and to a char boundary).
    pub(crate) fn span(&self, source: &str, offset: usize, len: usize) -> Span {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = source.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
        Span {
            offset,
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
            len,
        }
    }
}

/// The span of `len` bytes at byte `offset` of `source`, with its line and column.
pub fn span_at(source: &str, offset: usize, len: usize) -> Span {
    LineIndex::new(source).span(source, offset, len)
}

/// The candidate closest to `word`, if one is close enough to be what was meant.
///
/// Close means an edit distance (with transpositions) of at most a third of the word's length
/// (at least 1) and less than the candidate's length; failing that, a candidate that `word`
/// extends with `_` or `-` (`on_sucess` suggests `on`). Unrelated words give `None`.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let word_len = lower.chars().count();
    let threshold = (word_len / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    let mut prefix: Option<&'a str> = None;
    for candidate in candidates {
        let cand = candidate.to_lowercase();
        let distance = edit_distance(&lower, &cand);
        if distance <= threshold
            && distance < cand.chars().count()
            && best.is_none_or(|(d, _)| distance < d)
        {
            best = Some((distance, candidate));
        }
        let extends = lower
            .strip_prefix(cand.as_str())
            .is_some_and(|rest| rest.starts_with('_') || rest.starts_with('-'));
        if !cand.is_empty() && extends && prefix.is_none_or(|p| p.len() < candidate.len()) {
            prefix = Some(candidate);
        }
    }
    best.map(|(_, c)| c).or(prefix)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbouring chars each cost 1.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Long words are never identifiers worth suggesting; this bounds the work.
    if a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = v;
        }
    }
    d[a.len() * width + b.len()]
}

/// Renders `diag` as plain text, rustc style, with the source line and carets under the span:
///
/// ```text
/// error: unknown field `on_sucess`
///   --> .loops/fix.yaml:12:5
///    |
/// 12 |     on_sucess: { success: done }
///    |     ^^^^^^^^^
///    = help: did you mean `on`?
/// ```
///
/// Never panics: a span outside `source` renders without a snippet; tabs show as 4 spaces.
pub fn render(diag: &Diagnostic, file: &str, source: &str) -> String {
    let mut out = format!("error: {}\n", diag.message);
    let Some(span) = diag.span else {
        let _ = writeln!(out, "  --> {file}");
        if let Some(help) = &diag.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        return out;
    };
    let line_no = span.line.max(1);
    let width = line_no.to_string().len();
    let pad = " ".repeat(width);
    let _ = writeln!(out, "{pad}--> {file}:{line_no}:{}", span.column.max(1));
    let line = source
        .split('\n')
        .nth(line_no as usize - 1)
        .map(|l| l.trim_end_matches('\r'));
    if let Some(line) = line {
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{line_no} | {}", expand_tabs(line).trim_end());
        let col = span.column.max(1) as usize - 1;
        let before: String = line.chars().take(col).collect();
        let indent = expand_tabs(&before).chars().count();
        // Carets cover the span's bytes on this line, at least one.
        let mut carets = 0;
        let mut bytes = 0;
        for c in line.chars().skip(col) {
            if bytes >= span.len {
                break;
            }
            bytes += c.len_utf8();
            carets += if c == '\t' { 4 } else { 1 };
        }
        let _ = writeln!(
            out,
            "{pad} | {}{}",
            " ".repeat(indent),
            "^".repeat(carets.max(1))
        );
    }
    if let Some(help) = &diag.help {
        let _ = writeln!(out, "{pad} = help: {help}");
    }
    out
}

fn expand_tabs(text: &str) -> String {
    text.replace('\t', "    ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_and_prefixes() {
        let fields = [
            "on",
            "next",
            "shell",
            "on_interrupted",
            "terminal",
            "capture",
        ];
        assert_eq!(suggest("on_sucess", fields), Some("on"));
        assert_eq!(suggest("sucess", ["success", "failure"]), Some("success"));
        assert_eq!(suggest("tset", ["test", "fix", "done"]), Some("test"));
        assert_eq!(suggest("intial", ["initial", "states"]), Some("initial"));
        assert_eq!(suggest("shel", fields), Some("shell"));
        assert_eq!(
            suggest("contxt", ["context", "captured", "prev"]),
            Some("context")
        );
        assert_eq!(suggest("banana", fields), None);
        assert_eq!(suggest("x", ["_", "y"]), None);
        assert_eq!(suggest("", fields), None);
    }

    #[test]
    fn span_at_counts_chars_and_lines() {
        let src = "a: 1\nbé: x\n";
        let span = span_at(src, 8, 1);
        assert_eq!((span.line, span.column), (2, 3));
        let past = span_at(src, 999, 1);
        assert_eq!(past.offset, src.len());
        let inside = span_at(src, 7, 1); // inside `é`
        assert_eq!(inside.offset, 6);
    }

    #[test]
    fn render_never_panics_on_odd_spans() {
        let diag = |line, column, len| Diagnostic {
            span: Some(Span {
                offset: usize::MAX,
                line,
                column,
                len,
            }),
            message: "m".into(),
            help: Some("h".into()),
        };
        for src in ["", "\t\té", "a\n\tb: ✓✓\n"] {
            for (l, c, n) in [
                (0, 0, 0),
                (1, 1, 1),
                (2, 99, usize::MAX),
                (u32::MAX, u32::MAX, 5),
            ] {
                let _ = render(&diag(l, c, n), "f", src);
            }
        }
        let plain = Diagnostic::new(None, "boom");
        assert_eq!(render(&plain, "f.yaml", ""), "error: boom\n  --> f.yaml\n");
    }

    #[test]
    fn render_points_with_carets() {
        let src = "states:\n  test:\n    on_sucess: x\n";
        let diag = Diagnostic::new(Some(span_at(src, 20, 9)), "unknown field `on_sucess`")
            .with_suggestion(Some("on"));
        let text = render(&diag, "f.yaml", src);
        assert_eq!(
            text,
            "error: unknown field `on_sucess`\n --> f.yaml:3:5\n  |\n3 |     on_sucess: x\n  |     ^^^^^^^^^\n  = help: did you mean `on`?\n"
        );
    }
}
