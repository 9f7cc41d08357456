//! Interpolation: parsing `${namespace.path}` references in loop text and rendering them with
//! a lookup: verbatim for prompts, as a safe bash script for shell actions ([`shell`]).
//!
//! Invariants: parsing never fails (text that is not a well-formed reference stays literal, byte
//! for byte). In a rendered shell action no value that is not `:raw` ever passes through the
//! shell parser: values are bound to variables with ANSI-C quoting before the author's script,
//! and the reference becomes a parameter expansion in the form its lexical context needs
//! ([`shell_lex`] finds the context). Agent output can therefore never become shell syntax, and
//! it arrives byte-exact (NUL bytes dropped). See [`shell`] for the argument.
//!
//! | where `${x}` is written | what replaces it |
//! |---|---|
//! | unquoted word, `X=${x}`, `$(...)`, backticks | `"${__dloop_N}"` |
//! | `"..."`, `X="${x}"`, unquoted heredoc body | `${__dloop_N}` |
//! | `'...'` | `'"${__dloop_N}"'` |
//! | `$'...'` | `'"${__dloop_N}"$'` |
//! | quoted heredoc body, heredoc delimiter, arithmetic, after a lone `\` | refused at validation |
//!
//! # Syntax
//!
//! ```text
//! ${namespace.seg[.seg...][:raw][:default=VALUE[:raw]]}
//! ${namespace.seg[.seg...][:raw]?}
//! $${                          a literal `${` (the text after it is not a reference)
//! ```
//!
//! - `namespace` is `[A-Za-z_][A-Za-z0-9_]*`; each path segment is `[A-Za-z0-9_-]+`.
//! - `:raw` inserts the value without shell quoting.
//! - `:default=VALUE` is used when the value is missing. VALUE runs to the first `}`, so it
//!   cannot contain `}` (nor `${`: defaults are literal text, never nested references).
//! - Order rule: `:raw` may come before `:default=` (`${context.x:raw:default=a b}`) or at the
//!   very end of the default value (`${context.x:default=a b:raw}`); both mean the same. A
//!   default value therefore cannot itself end in `:raw`.
//! - `?` directly before `}` makes a missing value empty. It is only a suffix when there is no
//!   default (a `?` at the end of a default value is part of the value).
//!
//! Text that starts like `${` but has no `namespace.` prefix is bash's own syntax and passes
//! through untouched: `${VAR}`, `${VAR:-x}`, `${#arr[@]}`, `${arr[0]}`. Text that has the
//! `${namespace.` prefix is ours: with an unknown namespace it is still a reference (with
//! [`Namespace::Unknown`], so validation can report it), and when the rest is malformed
//! (`${context.x:bogus}`, unterminated `${context.x`) it stays literal and [`malformed`] reports
//! it. No valid bash expansion starts with `${name.`, so nothing of bash's is taken by mistake.
//!
//! The types are here; scan.rs parses, render.rs renders, quote.rs quotes a word for display,
//! and [`shell`] / [`shell_lex`] render shell actions.

mod quote;
mod render;
mod scan;
pub mod shell;
pub mod shell_lex;

use std::fmt;

use thiserror::Error;

pub use shell::{Refusal, render_shell, shell_refusals};
pub use shell_lex::ShellContext;

pub use self::quote::shell_quote;
pub use self::render::render;
pub(crate) use self::render::resolve;
pub use self::scan::{malformed, parse_template, references};

/// The namespace of a reference: the part before the first dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// `context`: the run's context values.
    Context,
    /// `captured`: results kept with `capture:` (`captured.NAME.output|stderr|...`).
    Captured,
    /// `prev`: the previous step (`output|exit_code|state|verdict`).
    Prev,
    /// `state`: the current state (`name|visit`).
    State,
    /// `run`: the run (`id|iteration|dir|elapsed_ms|loop`).
    Run,
    /// `env`: the environment of the dloop process.
    Env,
    /// Any other name; a reference with it never has a value and validation reports it.
    Unknown(String),
}

impl Namespace {
    /// The namespace for `name`; names other than the six known ones give [`Namespace::Unknown`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "context" => Self::Context,
            "captured" => Self::Captured,
            "prev" => Self::Prev,
            "state" => Self::State,
            "run" => Self::Run,
            "env" => Self::Env,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The name as written in templates.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Context => "context",
            Self::Captured => "captured",
            Self::Prev => "prev",
            Self::State => "state",
            Self::Run => "run",
            Self::Env => "env",
            Self::Unknown(name) => name,
        }
    }

    /// Whether this is one of the six namespaces dloop knows.
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Unknown(_))
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `${namespace.path...}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRef {
    /// The namespace.
    pub namespace: Namespace,
    /// The dot-separated segments after the namespace (at least one).
    pub path: Vec<String>,
    /// `:raw`: insert the value as code, not as data.
    pub raw: bool,
    /// `:default=VALUE`: the value used when the lookup has none.
    pub default: Option<String>,
    /// `?`: a missing value is empty instead of an error.
    pub optional: bool,
    /// Byte offset of the `$` in the template text.
    pub offset: usize,
    /// Byte length of the whole reference, from `$` to `}` inclusive.
    pub len: usize,
}

impl VarRef {
    /// `namespace.seg.seg`, without `${}` or suffixes.
    pub fn name(&self) -> String {
        let mut name = self.namespace.as_str().to_owned();
        for segment in &self.path {
            name.push('.');
            name.push_str(segment);
        }
        name
    }
}

/// Writes the reference in its canonical form (`${ns.path[:raw][:default=V][?]}`), which is how
/// it was written unless the source put `:raw` after the default.
impl fmt::Display for VarRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${{{}", self.name())?;
        if self.raw {
            f.write_str(":raw")?;
        }
        if let Some(default) = &self.default {
            write!(f, ":default={default}")?;
        }
        if self.optional {
            f.write_str("?")?;
        }
        f.write_str("}")
    }
}

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as is (with `$${` already turned into `${`).
    Literal(String),
    /// A reference replaced by its value.
    Var(VarRef),
}

/// A parsed template: literals and references in source order. Adjacent literals are merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    /// The parts, in order.
    pub parts: Vec<Part>,
}

impl Template {
    /// The references of the template, in order.
    pub fn references(&self) -> impl Iterator<Item = &VarRef> {
        self.parts.iter().filter_map(|part| match part {
            Part::Var(var) => Some(var),
            Part::Literal(_) => None,
        })
    }
}

/// Something that starts like one of our references (`${name.`) but is not well formed; it is
/// left in the text literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Byte offset of the `$`.
    pub offset: usize,
    /// Byte length of the suspicious text (to the closing `}`, or to the end of the text).
    pub len: usize,
    /// What is wrong and what would be accepted.
    pub message: String,
}

/// How values are inserted when rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// Shell actions: the result is the script [`render_shell`] builds (values bound to
    /// variables, never parsed as code) unless `:raw`.
    Shell,
    /// Prompts and other text: values are inserted as they are.
    Verbatim,
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A reference has no value, no `:default=` and no `?`.
    #[error(
        "no value for `{reference}`: supply it, or write `:default=VALUE` or `?` to allow a missing value"
    )]
    Missing {
        /// The reference as written, e.g. `${captured.tests.output}`.
        reference: String,
    },
    /// A reference sits where no value can be inserted safely in a shell action (a quoted
    /// heredoc, arithmetic, ...). Validation refuses such loops; this is for stored old ones.
    #[error("`{reference}` cannot be interpolated where it is: it {reason}")]
    Refused {
        /// The reference as written.
        reference: String,
        /// Where it is and what to write instead.
        reason: String,
    },
}
