//! Renderers: `human` (terminal text, optionally colored), `json` (documented wire types) and
//! `graph` (the loop as text arrows, Mermaid or Graphviz dot).
//!
//! Commands build a plain report value, then hand it to exactly one renderer.

pub(crate) mod agent_view;
pub(crate) mod graph;
pub(crate) mod human;
pub(crate) mod json;
pub(crate) mod progress;
pub(crate) mod replay;
pub(crate) mod run_json;
pub(crate) mod run_view;
pub(crate) mod timeline;

use std::io::{IsTerminal, Write};

/// Output settings decided once in `main` and passed down; renderers never probe the terminal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ui {
    /// Color on stdout: stdout is a terminal and `NO_COLOR` is unset or empty (or
    /// `--color always`).
    pub(crate) color: bool,
    /// Color on stderr, by the same rule.
    pub(crate) color_stderr: bool,
    /// `-q`: no narration on stderr (errors and warnings still show).
    pub(crate) quiet: bool,
}

/// `--color`: when output is colored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    #[default]
    Auto,
    /// Always, even into a pipe or a file.
    Always,
    /// Never.
    Never,
}

impl Ui {
    /// Decides colors from `--color` and the environment: with `auto`, only on a terminal and
    /// never with `NO_COLOR`.
    pub(crate) fn new(color: ColorChoice, quiet: bool) -> Ui {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let decide = |terminal: bool| match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && terminal,
        };
        Ui {
            color: decide(std::io::stdout().is_terminal()),
            color_stderr: decide(std::io::stderr().is_terminal()),
            quiet,
        }
    }

    /// Writes a warning or an error to stderr, `-q` or not.
    pub(crate) fn warn(&self, text: &str) {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    /// Writes `text` to stdout as one piece.
    pub(crate) fn print(&self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// Writes `text` to stderr (narration, warnings). Errors writing stderr are ignored: there
    /// is nowhere left to report them.
    pub(crate) fn status(&self, text: &str) {
        if self.quiet && !text.starts_with("warning:") && !text.starts_with("error:") {
            return;
        }
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// A text style; rendered as ANSI escapes only when color is on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Paint {
    /// Bold, for names.
    Bold,
    /// Dim, for secondary details.
    Dim,
    /// Red, for errors.
    Red,
    /// Green, for success.
    Green,
    /// Yellow, for warnings.
    Yellow,
}

impl Paint {
    /// `text` in this style when `color`, else `text` unchanged.
    pub(crate) fn apply(self, color: bool, text: &str) -> String {
        if !color {
            return text.to_owned();
        }
        let code = match self {
            Paint::Bold => "1",
            Paint::Dim => "2",
            Paint::Red => "31",
            Paint::Green => "32",
            Paint::Yellow => "33",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}
