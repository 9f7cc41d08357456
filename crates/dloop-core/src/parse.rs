//! Loop files from YAML to [`LoopDef`], with a [`Diagnostic`] and its `line:col` for every
//! problem, and a [`SpanIndex`] that lets validation point into the source.
//!
//! Reading goes in three steps: guards on the raw bytes (size, UTF-8, emptiness), a spanned
//! YAML tree (`tree`), and serde over that tree (`de`). The top-level fields and each state are
//! read one by one, so an error in one does not hide errors in another.

mod de;
mod tree;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::diagnostic::{Diagnostic, LineIndex, Span};
use crate::model::{LoopDef, StateDef};
use de::{DeError, EntriesDe, NodeDe};
pub(crate) use tree::{Node, NodeKind};

/// The largest loop file read (1 MiB); larger files are refused before parsing.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// A loop file read without errors: its definition and where each part of it is written.
#[derive(Debug, Clone)]
pub struct ParsedLoop {
    /// The definition.
    pub def: LoopDef,
    /// Where each key and value of the file is.
    pub spans: SpanIndex,
}

/// Where the keys and values of a parsed loop file are, looked up by path: `["initial"]`,
/// `["states", "fix"]`, `["states", "fix", "on", "success"]`, `["required", "0"]`.
#[derive(Debug, Clone)]
pub struct SpanIndex {
    root: Node,
    source: String,
    lines: LineIndex,
}

impl SpanIndex {
    /// The node at `path` (mapping keys, or list indexes as decimal text).
    pub(crate) fn node(&self, path: &[&str]) -> Option<&Node> {
        path.iter()
            .try_fold(&self.root, |node, segment| match &node.kind {
                NodeKind::Map(_) => node.entry(segment).map(|(_, v)| v),
                NodeKind::Seq(_) => segment.parse().ok().and_then(|i| node.item(i)),
                NodeKind::Scalar(..) => None,
            })
    }

    /// The span of the key that ends `path` (`["states", "fix"]`: the state's name).
    pub fn key(&self, path: &[&str]) -> Option<Span> {
        let (last, parent) = path.split_last()?;
        self.node(parent)?.entry(last).map(|(k, _)| k.span)
    }

    /// The span of the value at `path`.
    pub fn value(&self, path: &[&str]) -> Option<Span> {
        self.node(path).map(|n| n.span)
    }

    /// The span of the whole file's top-level mapping.
    pub fn root(&self) -> Span {
        self.root.span
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The span of `len` bytes at byte `offset` of the source.
    pub fn span_at(&self, offset: usize, len: usize) -> Span {
        self.lines.span(&self.source, offset, len)
    }
}

/// Reads a loop file.
///
/// # Errors
/// Returns every problem found: a file over [`MAX_FILE_BYTES`], not UTF-8, empty, not YAML,
/// more than one document, a top level that is not a mapping, duplicate keys, unknown fields
/// (with a suggestion), wrong types and bad values (durations, limits), each with its span.
pub fn parse_loop(bytes: &[u8]) -> Result<ParsedLoop, Vec<Diagnostic>> {
    let source = check_bytes(bytes).map_err(|d| vec![d])?;
    let (root, mut diagnostics) = tree::build(source)?;
    let empty = || {
        vec![
            Diagnostic::new(None, "file is empty: a loop needs `initial` and `states`").with_help(
                "start from `dloop init`, or write `initial: STATE` and a `states:` mapping",
            ),
        ]
    };
    let Some(root) = root else {
        return Err(empty());
    };
    let entries = match &root.kind {
        NodeKind::Map(entries) => entries,
        NodeKind::Scalar(text, _) if root.is_null() && text.is_empty() => return Err(empty()),
        _ => {
            return Err(vec![
                Diagnostic::new(
                    Some(root.span),
                    format!(
                        "a loop file must be a mapping of fields, found {}",
                        root.describe()
                    ),
                )
                .with_help("start with `initial: STATE` and a `states:` mapping"),
            ]);
        }
    };

    let mut fields = Vec::new();
    let mut states = IndexMap::new();
    for entry in entries {
        if entry.0.as_str() == Some("states") {
            read_states(&entry.1, &mut states, &mut diagnostics);
            continue;
        }
        let one = EntriesDe {
            entries: vec![entry],
            span: root.span,
        };
        match LoopDef::deserialize(one) {
            Ok(_) => fields.push(entry),
            Err(e) => diagnostics.push(e.into_diagnostic()),
        }
    }
    let def = match LoopDef::deserialize(EntriesDe {
        entries: fields,
        span: root.span,
    }) {
        Ok(mut def) => {
            def.states = states;
            Some(def)
        }
        Err(e) => {
            diagnostics.push(e.or_span(root.span).into_diagnostic());
            None
        }
    };
    match def {
        Some(def) if diagnostics.is_empty() => {
            let spans = SpanIndex {
                root,
                source: source.to_owned(),
                lines: LineIndex::new(source),
            };
            Ok(ParsedLoop { def, spans })
        }
        _ => {
            diagnostics.sort_by_key(|d| d.span.map(|s| s.offset));
            Err(diagnostics)
        }
    }
}

/// Reads another YAML file kind (the config) up to its spanned tree, with the loop files'
/// guards: the root node (`None` for an empty file), or every problem that stops reading
/// (duplicate keys included, as errors).
pub(crate) fn read_tree(bytes: &[u8]) -> Result<Option<Node>, Vec<Diagnostic>> {
    let source = check_bytes(bytes).map_err(|d| vec![d])?;
    let (root, diagnostics) = tree::build(source)?;
    if diagnostics.is_empty() {
        Ok(root)
    } else {
        Err(diagnostics)
    }
}

/// Reads `node` into `T` with the loop files' serde machinery (spans, suggestions).
pub(crate) fn from_node<T: serde::de::DeserializeOwned>(node: &Node) -> Result<T, Diagnostic> {
    T::deserialize(NodeDe(node)).map_err(|e| e.or_span(node.span).into_diagnostic())
}

/// Reads one entry of a mapping (at `span`) into `T` as if it were the whole mapping: for
/// reporting each field's error on its own.
pub(crate) fn from_entry<T: serde::de::DeserializeOwned>(
    entry: &(Node, Node),
    span: Span,
) -> Result<T, Diagnostic> {
    T::deserialize(EntriesDe {
        entries: vec![entry],
        span,
    })
    .map_err(|e| e.or_span(span).into_diagnostic())
}

/// Size and encoding guards, before any parsing.
fn check_bytes(bytes: &[u8]) -> Result<&str, Diagnostic> {
    if bytes.len() > MAX_FILE_BYTES {
        #[allow(clippy::cast_precision_loss)] // a size shown to one decimal
        let mib = bytes.len() as f64 / (1024.0 * 1024.0);
        return Err(Diagnostic::new(
            None,
            format!("loop file is {mib:.1} MiB; loop files are limited to 1 MiB"),
        )
        .with_help("keep large prompts and data in files the loop reads at run time"));
    }
    let source = std::str::from_utf8(bytes).map_err(|e| {
        let good = e.valid_up_to();
        // The prefix before the first bad byte is valid UTF-8, so it can be indexed.
        let prefix = std::str::from_utf8(&bytes[..good]).unwrap_or_default();
        let span = LineIndex::new(prefix).span(prefix, good, 1);
        Diagnostic::new(
            Some(span),
            format!(
                "file is not UTF-8: invalid byte 0x{:02x} at {}:{}",
                bytes[good], span.line, span.column
            ),
        )
        .with_help("save the file as UTF-8")
    })?;
    Ok(source)
}

/// Reads each state on its own, so each state's errors are reported.
fn read_states(
    node: &Node,
    states: &mut IndexMap<String, StateDef>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let entries = match &node.kind {
        NodeKind::Map(entries) => entries,
        _ if node.is_null() => return,
        _ => {
            diagnostics.push(
                Diagnostic::new(
                    Some(node.span),
                    format!(
                        "`states` must be a mapping of state names to states, found {}",
                        node.describe()
                    ),
                )
                .with_help("write each state as `NAME:` followed by its fields, indented"),
            );
            return;
        }
    };
    for (key, value) in entries {
        let Some(name) = key.as_str() else {
            diagnostics.push(Diagnostic::new(
                Some(key.span),
                format!("a state name must be a string, found {}", key.describe()),
            ));
            continue;
        };
        match read_state(value) {
            Ok(state) => {
                states.insert(name.to_owned(), state);
            }
            Err(errors) => diagnostics.extend(errors.into_iter().map(DeError::into_diagnostic)),
        }
    }
}

/// Reads one state; on error, reads each of its fields alone to report them all.
fn read_state(node: &Node) -> Result<StateDef, Vec<DeError>> {
    if node.is_null() {
        return Ok(StateDef::default());
    }
    let whole = match StateDef::deserialize(NodeDe(node)) {
        Ok(state) => return Ok(state),
        Err(e) => e,
    };
    let NodeKind::Map(entries) = &node.kind else {
        return Err(vec![whole]);
    };
    let errors: Vec<DeError> = entries
        .iter()
        .filter_map(|entry| {
            StateDef::deserialize(EntriesDe {
                entries: vec![entry],
                span: node.span,
            })
            .err()
        })
        .collect();
    if errors.is_empty() {
        Err(vec![whole])
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        match parse_loop(src.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(diags) => diags.iter().map(Diagnostic::located).collect(),
        }
    }

    #[test]
    fn reads_a_small_loop() {
        let src = "initial: a\nstates:\n  a:\n    shell: echo hi\n    next: b\n  b:\n    terminal: success\n";
        let parsed = parse_loop(src.as_bytes()).expect("valid");
        assert_eq!(parsed.def.initial.as_deref(), Some("a"));
        assert_eq!(parsed.def.states.len(), 2);
        let key = parsed.spans.key(&["states", "b"]).expect("state b");
        assert_eq!((key.line, key.column), (6, 3));
        let next = parsed.spans.value(&["states", "a", "next"]).expect("next");
        assert_eq!((next.line, next.column, next.len), (5, 11, 1));
    }

    #[test]
    fn reports_unknown_fields_in_every_state() {
        let src =
            "initial: a\nstates:\n  a:\n    shel: x\n    nxt: b\n  b:\n    terminal: sucess\n";
        assert_eq!(
            errors(src),
            [
                "4:5 unknown field `shel`",
                "5:5 unknown field `nxt`",
                "7:15 unknown value `sucess`"
            ]
        );
    }

    #[test]
    fn evaluator_errors_point_inside_the_evaluator() {
        let src = "states:\n  a:\n    evaluate: { type: contains, patern: x }\n";
        assert_eq!(errors(src), ["3:33 unknown field `patern`"]);
        let src = "states:\n  a:\n    evaluate: { type: contans }\n";
        assert_eq!(errors(src), ["3:23 unknown value `contans`"]);
    }

    #[test]
    fn duplicate_keys_point_at_the_second() {
        let src = "initial: a\ninitial: b\n";
        assert_eq!(errors(src), ["2:1 duplicate key `initial`"]);
    }

    #[test]
    fn strings_accept_any_scalar_and_quoted_numbers_stay_strings() {
        let src = "name: 2024\ncontext:\n  n: '5'\n  m: 5\n  b: true\nstates:\n";
        let parsed = parse_loop(src.as_bytes()).expect("valid");
        assert_eq!(parsed.def.name.as_deref(), Some("2024"));
        assert_eq!(parsed.def.context["n"].0, "5");
        assert_eq!(parsed.def.context["b"].0, "true");
    }

    #[test]
    fn byte_order_mark_and_crlf() {
        assert_eq!(
            errors("\u{feff}initial: a\r\nstates:\r\n  a:\r\n    shel: x\r\n"),
            ["4:5 unknown field `shel`"]
        );
        assert_eq!(
            errors("\u{feff}intial: a\r\n"),
            ["1:2 unknown field `intial`"]
        );
    }

    #[test]
    fn wrong_types_and_missing_fields_in_plain_words() {
        let src = "states:\n  a:\n    retries: { on: [error] }\n  b:\n    retries: 3\n  c:\n    retries: { max: -1 }\n";
        assert_eq!(
            errors(src),
            [
                "3:14 missing field `max`",
                "5:14 expected a mapping of fields, found the number 3",
                "7:21 expected a whole number from 0, found the number -1",
            ]
        );
    }
}
