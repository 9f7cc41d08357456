//! A serde `Deserializer` over the spanned tree, whose errors carry the span of the innermost
//! node where they happened and keep unknown fields and values as data for suggestions.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};

use super::tree::{Node, NodeKind, Value};
use crate::diagnostic::{Diagnostic, Span, suggest};

/// Why a node could not be read into the model, and where.
#[derive(Debug)]
pub(crate) struct DeError {
    span: Option<Span>,
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    Message(String),
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    UnknownVariant {
        variant: String,
        expected: &'static [&'static str],
    },
}

impl DeError {
    /// Gives the error the span of `node` (or of the key or value it names) unless an inner
    /// node already did.
    fn at(mut self, node: &Node) -> Self {
        if self.span.is_none() {
            let span = match (&node.kind, &self.kind) {
                (NodeKind::Map(entries), ErrorKind::UnknownField { field, .. }) => entries
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(field))
                    .map(|(k, _)| k.span),
                (NodeKind::Map(entries), ErrorKind::UnknownVariant { variant, .. }) => entries
                    .iter()
                    .find(|(_, v)| v.as_str() == Some(variant))
                    .map(|(_, v)| v.span),
                _ => None,
            };
            self.span = Some(span.unwrap_or(node.span));
        }
        self
    }

    /// Gives the error `span` unless it has one.
    pub(crate) fn or_span(mut self, span: Span) -> Self {
        self.span.get_or_insert(span);
        self
    }

    /// The diagnostic for this error, with a suggestion or the list of what is expected.
    pub(crate) fn into_diagnostic(self) -> Diagnostic {
        let (message, help) = match self.kind {
            ErrorKind::Message(message) => (message, None),
            ErrorKind::UnknownField { field, expected } => {
                let help = expectation(&field, expected, "this mapping takes no fields");
                (format!("unknown field `{field}`"), Some(help))
            }
            ErrorKind::UnknownVariant { variant, expected } => {
                let help = expectation(&variant, expected, "no value is allowed here");
                (format!("unknown value `{variant}`"), Some(help))
            }
        };
        Diagnostic {
            span: self.span,
            message,
            help,
        }
    }
}

fn expectation(word: &str, expected: &'static [&'static str], none: &str) -> String {
    if let Some(s) = suggest(word, expected.iter().copied()) {
        return format!("did you mean `{s}`?");
    }
    match expected {
        [] => none.to_owned(),
        [one] => format!("expected `{one}`"),
        many => {
            let list: Vec<String> = many.iter().map(|e| format!("`{e}`")).collect();
            format!("expected one of {}", list.join(", "))
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Message(m) => f.write_str(m),
            ErrorKind::UnknownField { field, .. } => write!(f, "unknown field `{field}`"),
            ErrorKind::UnknownVariant { variant, .. } => write!(f, "unknown value `{variant}`"),
        }
    }
}

impl std::error::Error for DeError {}

fn describe(unexpected: &Unexpected<'_>) -> String {
    match unexpected {
        Unexpected::Unit | Unexpected::Option => "nothing (null)".to_owned(),
        Unexpected::Bool(b) => format!("`{b}`"),
        Unexpected::Unsigned(n) => format!("the number {n}"),
        Unexpected::Signed(n) => format!("the number {n}"),
        Unexpected::Float(n) => format!("the number {n}"),
        Unexpected::Str(s) => format!("the string `{s}`"),
        Unexpected::Map => "a mapping".to_owned(),
        Unexpected::Seq => "a list".to_owned(),
        other => other.to_string(),
    }
}

/// serde's words for what was expected, in a loop file's terms (no Rust type names).
fn plain_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number from 0".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "`true` or `false`".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a map" => "a mapping".to_owned(),
        other if other.starts_with("struct ") => "a mapping of fields".to_owned(),
        other => other.to_owned(),
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            span: None,
            kind: ErrorKind::Message(msg.to_string()),
        }
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        let expected = plain_expected(&expected.to_string());
        let found = describe(&unexpected);
        Self::custom(format_args!("expected {expected}, found {found}"))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        let expected = plain_expected(&expected.to_string());
        let found = describe(&unexpected);
        Self::custom(format_args!("expected {expected}, found {found}"))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self {
            span: None,
            kind: ErrorKind::UnknownField {
                field: field.to_owned(),
                expected,
            },
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let kind = ErrorKind::UnknownVariant {
            variant: variant.to_owned(),
            expected,
        };
        Self { span: None, kind }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing field `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format_args!("field `{field}` is set twice"))
    }
}

/// Reads one node.
#[derive(Clone, Copy)]
pub(crate) struct NodeDe<'a>(pub(crate) &'a Node);

/// Reads some entries of a mapping as if they were the whole mapping.
pub(crate) struct EntriesDe<'a> {
    pub(crate) entries: Vec<&'a (Node, Node)>,
    pub(crate) span: Span,
}

impl<'de> de::Deserializer<'de> for EntriesDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let entries = self.entries.clone();
        let mut access = MapDe {
            entries: entries.into_iter(),
            value: None,
        };
        visitor.visit_map(&mut access).map_err(|e| {
            let node = Node {
                span: self.span,
                kind: NodeKind::Map(self.entries.iter().map(|&e| e.clone()).collect()),
            };
            e.at(&node)
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.0.kind {
            NodeKind::Scalar(text, value) => match *value {
                Value::Null => visitor.visit_unit(),
                Value::Bool(b) => visitor.visit_bool(b),
                Value::Int(n) => visitor.visit_i64(n),
                Value::UInt(n) => visitor.visit_u64(n),
                Value::Float(n) => visitor.visit_f64(n),
                Value::Str => visitor.visit_str(text),
            },
            NodeKind::Seq(items) => {
                let mut access = SeqDe {
                    items: items.iter(),
                };
                visitor.visit_seq(&mut access)
            }
            NodeKind::Map(entries) => {
                let mut access = MapDe {
                    entries: entries.iter(),
                    value: None,
                };
                visitor.visit_map(&mut access)
            }
        };
        result.map_err(|e| e.at(self.0))
    }

    /// Any non-null scalar reads as a string, as written: `name: 2024` is the string "2024".
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Scalar(text, value) if *value != Value::Null => {
                visitor.visit_str(text).map_err(|e: DeError| e.at(self.0))
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.is_null() {
            visitor.visit_none().map_err(|e: DeError| e.at(self.0))
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match &self.0.kind {
            NodeKind::Scalar(text, value) if *value != Value::Null => {
                visitor.visit_enum(text.as_str().into_deserializer())
            }
            NodeKind::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                visitor.visit_enum(EnumDe { key, value })
            }
            _ => Err(de::Error::custom(format_args!(
                "expected a name or a mapping with one key, found {}",
                self.0.describe()
            ))),
        };
        result.map_err(|e| e.at(self.0))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(NodeDe(node))
                .map(Some)
                .map_err(|e| e.at(node)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a, I> {
    entries: I,
    value: Option<&'a Node>,
}

impl<'de, 'a, I: Iterator<Item = &'a (Node, Node)>> de::MapAccess<'de> for MapDe<'a, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(NodeDe(key))
                    .map(Some)
                    .map_err(|e| e.at(key))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value read before key"))?;
        seed.deserialize(NodeDe(value)).map_err(|e| e.at(value))
    }
}

struct EnumDe<'a> {
    key: &'a Node,
    value: &'a Node,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumDe<'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), DeError> {
        let variant = seed
            .deserialize(NodeDe(self.key))
            .map_err(|e| e.at(self.key))?;
        Ok((variant, NodeDe(self.value)))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        if self.0.is_null() {
            Ok(())
        } else {
            Err(<DeError as de::Error>::custom("this value takes no fields").at(self.0))
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}
