//! `CliError`: the one error type of the `dloop` binary (kind, cause, hint), and how it is
//! printed on stderr.

use std::fmt;
use std::io;

/// What went wrong, coarsely; [`crate::exit::Exit::for_error`] turns it into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The command line is wrong: an unknown loop, a bad loop name, a missing project.
    Usage,
    /// A loop file is invalid.
    Invalid,
    /// dloop refuses to do what was asked because it would destroy or conflict with something.
    Refused,
    /// Reading or writing storage failed (disk full, permissions, a lost claim).
    Io,
    /// Stored data is damaged or was changed behind dloop's back (a corrupt log, an edited
    /// run.json, a link in a run folder); dloop refused to guess.
    Corrupt,
    /// dloop could not do its own job (a bug, or a condition it cannot handle).
    Internal,
}

/// A failed command: its kind, the cause (with context), and what the user can do next.
#[derive(Debug)]
pub(crate) struct CliError {
    /// Picks the exit code.
    pub(crate) kind: ErrorKind,
    /// The message and its cause chain.
    pub(crate) source: anyhow::Error,
    /// One line saying what to do next.
    pub(crate) hint: Option<String>,
}

impl CliError {
    /// A new error of `kind` with `message` and no hint.
    pub(crate) fn new(kind: ErrorKind, message: impl fmt::Display) -> CliError {
        CliError {
            kind,
            source: anyhow::anyhow!("{message}"),
            hint: None,
        }
    }

    /// A usage error.
    pub(crate) fn usage(message: impl fmt::Display) -> CliError {
        CliError::new(ErrorKind::Usage, message)
    }

    /// An I/O error with `what` failed as context (`reading .loops/a.yaml`).
    pub(crate) fn io(what: impl fmt::Display, err: io::Error) -> CliError {
        CliError {
            kind: ErrorKind::Io,
            source: anyhow::Error::new(err).context(what.to_string()),
            hint: None,
        }
    }

    /// Adds a hint.
    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    /// Whether the cause is a closed stdout (`dloop list | head -1`): such errors exit quietly.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        self.source.chain().any(|cause| {
            cause
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
        })
    }

    /// The text printed on stderr: `error: message: cause: ...` then `hint: ...`.
    pub(crate) fn report(&self) -> String {
        let mut out = format!("error: {}", self.source);
        for cause in self.source.chain().skip(1) {
            out.push_str(&format!(": {cause}"));
        }
        out.push('\n');
        if let Some(hint) = &self.hint {
            out.push_str(&format!("hint: {hint}\n"));
        }
        out
    }
}

/// Writing to stdout failed (a closed pipe is reported quietly by `main`).
impl From<io::Error> for CliError {
    fn from(err: io::Error) -> CliError {
        CliError::io("writing output", err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_cause_chain_and_hint() {
        let err =
            CliError::io("reading a.yaml", io::Error::other("disk on fire")).with_hint("retry");
        assert_eq!(
            err.report(),
            "error: reading a.yaml: disk on fire\nhint: retry\n"
        );
        assert!(!err.is_broken_pipe());
        let pipe: CliError = io::Error::from(io::ErrorKind::BrokenPipe).into();
        assert!(pipe.is_broken_pipe());
    }
}
