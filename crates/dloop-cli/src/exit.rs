//! Named exit codes of the `dloop` binary, and the one place that maps an error kind to a code.
//!
//! The codes are part of the contract (DESIGN.md section 4) and documented in the README.

use std::process::ExitCode;

use crate::error::ErrorKind;

/// How a `dloop` process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0: the command did what was asked (a run completed, the loops are valid).
    Ok,
    /// 1: a run failed (reached a `terminal: failure` state or an unrouted error) or was
    /// cancelled. An outcome of the loop, never a fault of dloop.
    Failed,
    /// 2: bad usage, an invalid loop file, or a refusal (file exists, scope held, run live).
    Usage,
    /// 3: the run is paused and can be resumed.
    Paused,
    /// 4: the run hit its timeout; resumable with a larger `--timeout`.
    TimedOut,
    /// 130: interrupted by Ctrl-C; the run is paused and resumable.
    Interrupted,
    /// 5: `dloop replay` left the record (a step differs from the recorded run's) and did not
    /// go on live.
    Diverged,
    /// 70 (sysexits' EX_SOFTWARE): dloop itself failed: its storage (I/O, a full disk, a lost
    /// claim), data it refuses to guess at (a corrupt log, an edited run.json, a link in a run
    /// folder), or an internal error. The run, if any, is as the log says; fix the cause and
    /// resume.
    Fault,
}

impl Exit {
    /// The numeric process exit status.
    pub(crate) fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Paused => 3,
            Exit::TimedOut => 4,
            Exit::Interrupted => 130,
            Exit::Diverged => 5,
            Exit::Fault => 70,
        }
    }

    /// The exit status of a command that failed with an error of `kind`.
    ///
    /// No catch-all arm: a new error kind cannot ship without someone choosing its code.
    pub(crate) fn for_error(kind: ErrorKind) -> Exit {
        match kind {
            ErrorKind::Usage => Exit::Usage,
            ErrorKind::Invalid => Exit::Usage,
            ErrorKind::Refused => Exit::Usage,
            ErrorKind::Io => Exit::Fault,
            ErrorKind::Corrupt => Exit::Fault,
            ErrorKind::Internal => Exit::Fault,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_contract() {
        let table = [
            (Exit::Ok, 0),
            (Exit::Failed, 1),
            (Exit::Usage, 2),
            (Exit::Paused, 3),
            (Exit::TimedOut, 4),
            (Exit::Interrupted, 130),
            (Exit::Diverged, 5),
            (Exit::Fault, 70),
        ];
        for (exit, code) in table {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
    }
}
