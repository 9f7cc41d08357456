//! The spanned YAML tree: [`Node`]s built from `yaml_rust2`'s event parser, with scalars
//! resolved by the YAML 1.2 core schema, duplicate keys refused and aliases expanded under a
//! node budget.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use crate::diagnostic::{Diagnostic, LineIndex, Span};

/// Most nodes a file may hold once its aliases are expanded (stops "billion laughs").
pub(crate) const MAX_NODES: usize = 100_000;
/// Deepest nesting of lists and mappings (the tree and serde recurse over it).
pub(crate) const MAX_DEPTH: usize = 64;

/// One YAML node and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Where the node is written (an alias expands to a copy keeping the anchor's spans).
    pub(crate) span: Span,
    /// What it holds.
    pub(crate) kind: NodeKind,
}

/// The three kinds of YAML node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    /// A scalar: its text as written (unescaped) and its resolved value.
    Scalar(String, Value),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order, without duplicate keys.
    Map(Vec<(Node, Node)>),
}

/// A scalar resolved by the YAML 1.2 core schema; quoted scalars are always strings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A negative whole number.
    Int(i64),
    /// A non-negative whole number.
    UInt(u64),
    /// A number with a fraction or exponent, `.inf`, `.nan`.
    Float(f64),
    /// Anything else: the text is the string.
    Str,
}

impl Node {
    /// The scalar's text, unless the node is null or a collection.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(_, Value::Null) => None,
            NodeKind::Scalar(text, _) => Some(text),
            _ => None,
        }
    }

    /// The entry of a mapping whose key's text is `key`.
    pub(crate) fn entry(&self, key: &str) -> Option<&(Node, Node)> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)),
            _ => None,
        }
    }

    /// The item of a sequence at `index`.
    pub(crate) fn item(&self, index: usize) -> Option<&Node> {
        match &self.kind {
            NodeKind::Seq(items) => items.get(index),
            _ => None,
        }
    }

    /// Whether the node is a null scalar.
    pub(crate) fn is_null(&self) -> bool {
        matches!(self.kind, NodeKind::Scalar(_, Value::Null))
    }

    /// How messages name what the node is: "a mapping", "a list", "a string", ...
    pub(crate) fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Map(_) => "a mapping",
            NodeKind::Seq(_) => "a list",
            NodeKind::Scalar(_, Value::Null) => "nothing (null)",
            NodeKind::Scalar(_, Value::Bool(_)) => "a boolean",
            NodeKind::Scalar(_, Value::Int(_) | Value::UInt(_) | Value::Float(_)) => "a number",
            NodeKind::Scalar(_, Value::Str) => "a string",
        }
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
pub(crate) fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let (negative, unsigned) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Value::Float(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.parse::<i64>() {
            return if n < 0 {
                Value::Int(n)
            } else {
                Value::UInt(n.unsigned_abs())
            };
        }
        if let Ok(n) = text.trim_start_matches('+').parse::<u64>() {
            return Value::UInt(n);
        }
        return text.parse::<f64>().map_or(Value::Str, Value::Float);
    }
    if text != unsigned {
        // Signs are allowed on decimal numbers only.
    } else if let Some(oct) = text.strip_prefix("0o") {
        return u64::from_str_radix(oct, 8).map_or(Value::Str, Value::UInt);
    } else if let Some(hex) = text.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).map_or(Value::Str, Value::UInt);
    }
    if is_core_float(unsigned) {
        return text.parse::<f64>().map_or(Value::Str, Value::Float);
    }
    Value::Str
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_core_float(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// Builds the tree of a single-document YAML text.
///
/// Returns `Ok(None)` for a text with no document (empty, blank, comments only). Returns the
/// diagnostics of problems that stop reading (syntax errors, several documents, alias bombs,
/// nesting too deep); duplicate keys are reported in the second value and the later entry is
/// dropped.
pub(crate) fn build(source: &str) -> Result<(Option<Node>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut builder = Builder::new(source);
    // yaml_rust2 reads a byte order mark as text; skip it, and count it in the offsets.
    let text = match source.strip_prefix('\u{feff}') {
        Some(rest) => {
            builder.skipped_chars = 1;
            rest
        }
        None => source,
    };
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| vec![builder.scan_error(&e)])?;
        let result = match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => Ok(()),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(vec![
                        Diagnostic::new(
                            Some(builder.span(mark, 3)),
                            "a loop file holds one YAML document, found a second",
                        )
                        .with_help(
                            "remove the `---` line and what follows, or move it to its own file",
                        ),
                    ]);
                }
                Ok(())
            }
            Event::Alias(id) => builder.alias(id, mark),
            Event::Scalar(text, style, anchor, tag) => {
                builder.scalar(text, style, anchor, tag.as_ref(), mark)
            }
            Event::SequenceStart(anchor, _) => builder.open(Frame::seq(anchor, mark)),
            Event::MappingStart(anchor, _) => builder.open(Frame::map(anchor, mark)),
            Event::SequenceEnd | Event::MappingEnd => builder.close(mark),
        };
        result.map_err(|d| vec![d])?;
    }
    Ok((builder.root, builder.diagnostics))
}

struct Frame {
    anchor: usize,
    start: Marker,
    size: usize,
    kind: FrameKind,
}

enum FrameKind {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(Node, Node)>,
        /// A key waiting for its value; `false` when it repeats an earlier key.
        pending: Option<(Node, bool)>,
        /// The line of each scalar key so far.
        seen: HashMap<String, u32>,
    },
}

impl Frame {
    fn seq(anchor: usize, start: Marker) -> Self {
        Self {
            anchor,
            start,
            size: 1,
            kind: FrameKind::Seq(Vec::new()),
        }
    }

    fn map(anchor: usize, start: Marker) -> Self {
        let kind = FrameKind::Map {
            entries: Vec::new(),
            pending: None,
            seen: HashMap::new(),
        };
        Self {
            anchor,
            start,
            size: 1,
            kind,
        }
    }
}

struct Builder<'s> {
    source: &'s str,
    lines: LineIndex,
    /// Byte offset of each char, when the source is not ASCII (markers count chars).
    char_offsets: Option<Vec<usize>>,
    /// Chars at the start of the source the parser did not see (a byte order mark).
    skipped_chars: usize,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    /// Whether an alias was expanded (changes the budget's message).
    aliases_used: bool,
    root: Option<Node>,
    diagnostics: Vec<Diagnostic>,
}

impl<'s> Builder<'s> {
    fn new(source: &'s str) -> Self {
        let char_offsets =
            (!source.is_ascii()).then(|| source.char_indices().map(|(i, _)| i).collect());
        Self {
            source,
            lines: LineIndex::new(source),
            char_offsets,
            skipped_chars: 0,
            stack: Vec::new(),
            anchors: HashMap::new(),
            nodes: 0,
            aliases_used: false,
            root: None,
            diagnostics: Vec::new(),
        }
    }

    fn offset(&self, mark: Marker) -> usize {
        let index = mark.index() + self.skipped_chars;
        match &self.char_offsets {
            None => index,
            Some(offsets) => offsets.get(index).copied().unwrap_or(self.source.len()),
        }
    }

    fn span(&self, mark: Marker, len: usize) -> Span {
        self.lines.span(self.source, self.offset(mark), len)
    }

    fn scan_error(&self, error: &ScanError) -> Diagnostic {
        Diagnostic::new(
            Some(self.span(*error.marker(), 1)),
            format!("invalid YAML: {}", error.info()),
        )
    }

    fn count(&mut self, added: usize, mark: Marker) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(added);
        if self.nodes > MAX_NODES {
            return Err(Diagnostic::new(
                Some(self.span(mark, 1)),
                if self.aliases_used {
                    format!("too many nodes after expanding aliases (more than {MAX_NODES})")
                } else {
                    format!("too many values: more than {MAX_NODES} YAML nodes")
                },
            )
            .with_help("a loop file does not need this many values; check aliases (`*name`)"));
        }
        Ok(())
    }

    fn alias(&mut self, id: usize, mark: Marker) -> Result<(), Diagnostic> {
        let Some((_, size)) = self.anchors.get(&id) else {
            return Err(Diagnostic::new(
                Some(self.span(mark, 1)),
                "alias to an unknown anchor",
            ));
        };
        let size = *size;
        self.aliases_used = true;
        self.count(size, mark)?;
        let node = self.anchors[&id].0.clone();
        self.push(node, size);
        Ok(())
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        mark: Marker,
    ) -> Result<(), Diagnostic> {
        self.count(1, mark)?;
        let offset = self.offset(mark);
        let len = scalar_len(self.source, offset, &text, style);
        let is_str_tag = tag.is_some_and(|t| t.suffix == "str");
        let value = if style == TScalarStyle::Plain && !is_str_tag {
            resolve_plain(&text)
        } else {
            Value::Str
        };
        let node = Node {
            span: self.lines.span(self.source, offset, len),
            kind: NodeKind::Scalar(text, value),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), 1));
        }
        self.push(node, 1);
        Ok(())
    }

    fn open(&mut self, frame: Frame) -> Result<(), Diagnostic> {
        self.count(1, frame.start)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(Diagnostic::new(
                Some(self.span(frame.start, 1)),
                format!("lists and mappings nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn close(&mut self, end: Marker) -> Result<(), Diagnostic> {
        let Some(frame) = self.stack.pop() else {
            return Err(Diagnostic::new(
                Some(self.span(end, 1)),
                "invalid YAML: unbalanced end",
            ));
        };
        // A block collection's start event comes after its first entry's key (a mapping) has
        // been read, so the collection starts where its first entry does.
        let first = match &frame.kind {
            FrameKind::Seq(items) => items.first().map(|n| n.span.offset),
            FrameKind::Map { entries, .. } => entries.first().map(|(k, _)| k.span.offset),
        };
        let start = self.offset(frame.start).min(first.unwrap_or(usize::MAX));
        let len = self.offset(end).saturating_sub(start).max(1);
        let span = self.lines.span(self.source, start, len);
        let kind = match frame.kind {
            FrameKind::Seq(items) => NodeKind::Seq(items),
            FrameKind::Map { entries, .. } => NodeKind::Map(entries),
        };
        let node = Node { span, kind };
        if frame.anchor > 0 {
            self.anchors
                .insert(frame.anchor, (node.clone(), frame.size));
        }
        self.push(node, frame.size);
        Ok(())
    }

    fn push(&mut self, node: Node, size: usize) {
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        frame.size = frame.size.saturating_add(size);
        match &mut frame.kind {
            FrameKind::Seq(items) => items.push(node),
            FrameKind::Map {
                entries,
                pending,
                seen,
            } => match pending.take() {
                Some((key, true)) => entries.push((key, node)),
                Some((_, false)) => {}
                None => {
                    let first = match &node.kind {
                        NodeKind::Scalar(text, _) => seen.insert(text.clone(), node.span.line),
                        _ => None,
                    };
                    let fresh = first.is_none();
                    if let (Some(line), NodeKind::Scalar(text, _)) = (first, &node.kind) {
                        // Keep the first line, so a third copy still points at the first.
                        seen.insert(text.clone(), line);
                        self.diagnostics.push(
                            Diagnostic::new(Some(node.span), format!("duplicate key `{text}`"))
                                .with_help(format!("`{text}` is already set on line {line}")),
                        );
                    }
                    *pending = Some((node, fresh));
                }
            },
        }
    }
}

/// How many source bytes a scalar starting at `offset` covers, as well as can be told
/// cheaply: the value itself when it is written as is, up to the closing quote of a quoted
/// scalar, and the indicator line of a block scalar.
fn scalar_len(source: &str, offset: usize, text: &str, style: TScalarStyle) -> usize {
    let rest = source.get(offset..).unwrap_or("");
    let line_len = rest.find('\n').unwrap_or(rest.len());
    match style {
        TScalarStyle::Plain if !text.is_empty() && rest.starts_with(text) => text.len(),
        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
            let quote = if style == TScalarStyle::SingleQuoted {
                b'\''
            } else {
                b'"'
            };
            let bytes = rest.as_bytes();
            let mut i = 1;
            while i < bytes.len() {
                if bytes[i] == b'\\' && quote == b'"' {
                    i += 2;
                    continue;
                }
                if bytes[i] == quote {
                    if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    return i + 1;
                }
                i += 1;
            }
            line_len
        }
        _ => rest[..line_len].trim_end().len().max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_core_schema() {
        for (text, value) in [
            ("", Value::Null),
            ("~", Value::Null),
            ("True", Value::Bool(true)),
            ("FALSE", Value::Bool(false)),
            ("yes", Value::Str),
            ("12", Value::UInt(12)),
            ("+12", Value::UInt(12)),
            ("-3", Value::Int(-3)),
            ("0x1f", Value::UInt(31)),
            ("0o17", Value::UInt(15)),
            ("1.5", Value::Float(1.5)),
            ("-.5e3", Value::Float(-500.0)),
            ("-.inf", Value::Float(f64::NEG_INFINITY)),
            ("5m", Value::Str),
            ("1.2.3", Value::Str),
            ("-", Value::Str),
            ("0x", Value::Str),
            ("1e", Value::Str),
        ] {
            assert_eq!(resolve_plain(text), value, "{text:?}");
        }
        assert!(matches!(resolve_plain(".nan"), Value::Float(f) if f.is_nan()));
    }

    #[test]
    fn spans_of_scalars_and_collections() {
        let src = "a: hello\nb: 'it''s'\nc: |\n  block\nd: [1, 2]\né: \"x\\\"y\"\n";
        let (root, diags) = build(src).expect("valid yaml");
        assert!(diags.is_empty());
        let root = root.expect("a document");
        let span = |key: &str| root.entry(key).expect("key").1.span;
        assert_eq!((span("a").line, span("a").column, span("a").len), (1, 4, 5));
        assert_eq!((span("b").column, span("b").len), (4, 7));
        // A block scalar starts at its first content line.
        assert_eq!((span("c").line, span("c").column), (4, 3));
        assert_eq!((span("d").line, span("d").column), (5, 4));
        let e = root.entry("é").expect("é");
        assert_eq!((e.0.span.column, e.1.span.column, e.1.span.len), (1, 4, 6));
    }
}
