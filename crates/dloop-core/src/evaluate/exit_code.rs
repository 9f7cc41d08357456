//! The `exit_code` evaluator: the only one that reads how the action ended rather than its text.
//!
//! Invariant: gives `success`, `failure` or `error` for any input; a listed `success_codes`
//! entry is checked only after "could not start", "timed out" and "killed by a signal".

use super::{EvalInput, Verdict};
use crate::model::ExitCodeEval;

/// `exit_code`: `success` when the code is in `success_codes` (default `[0]`); `error` when the
/// action could not start, timed out, was killed by a signal, or exited 126 (not executable) or
/// 127 (not found) without those being listed; `failure` for every other code (1..=125, and
/// 128+ when no signal was reported).
pub(super) fn exit_code(eval: &ExitCodeEval, input: &EvalInput) -> Verdict {
    if let Some(error) = input.error {
        return Verdict::new("error", format!("could not start: {error}"));
    }
    if input.timed_out {
        return Verdict::new("error", "timed out");
    }
    if let Some(signal) = input.signal {
        return Verdict::new("error", format!("killed by signal {signal}"));
    }
    let Some(code) = input.exit_code else {
        return Verdict::new("error", "no exit code");
    };
    let success = match &eval.success_codes {
        Some(codes) => codes.contains(&code),
        None => code == 0,
    };
    match code {
        _ if success => Verdict::new("success", format!("exit {code}")),
        126 => Verdict::new("error", "exit 126 (command not executable)"),
        127 => Verdict::new("error", "exit 127 (command not found)"),
        _ => Verdict::new("failure", format!("exit {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use super::super::*;
    use crate::model::ExitCodeEval;

    #[test]
    fn exit_code_table() {
        let default = Evaluate::ExitCode(ExitCodeEval::default());
        let listed = Evaluate::ExitCode(ExitCodeEval {
            success_codes: Some(vec![0, 1, 127]),
        });
        let code = |c| EvalInput {
            exit_code: Some(c),
            ..EvalInput::default()
        };
        let cases: Vec<(&Evaluate, EvalInput, &str, &str)> = vec![
            (&default, code(0), "success", "exit 0"),
            (&default, code(1), "failure", "exit 1"),
            (&default, code(2), "failure", "exit 2"),
            (&default, code(125), "failure", "exit 125"),
            (
                &default,
                code(126),
                "error",
                "exit 126 (command not executable)",
            ),
            (&default, code(127), "error", "exit 127 (command not found)"),
            (&default, code(128), "failure", "exit 128"),
            (&default, code(137), "failure", "exit 137"),
            (&default, code(255), "failure", "exit 255"),
            (&default, code(-1), "failure", "exit -1"),
            (&listed, code(1), "success", "exit 1"),
            (&listed, code(127), "success", "exit 127"),
            (&listed, code(2), "failure", "exit 2"),
            (
                &listed,
                code(126),
                "error",
                "exit 126 (command not executable)",
            ),
            (
                &default,
                EvalInput {
                    signal: Some(9),
                    ..EvalInput::default()
                },
                "error",
                "killed by signal 9",
            ),
            (
                &default,
                EvalInput {
                    exit_code: Some(0),
                    signal: Some(15),
                    ..EvalInput::default()
                },
                "error",
                "killed by signal 15",
            ),
            (
                &default,
                EvalInput {
                    timed_out: true,
                    signal: Some(9),
                    ..EvalInput::default()
                },
                "error",
                "timed out",
            ),
            (
                &listed,
                EvalInput {
                    error: Some("no such file"),
                    ..EvalInput::default()
                },
                "error",
                "could not start: no such file",
            ),
            (&default, EvalInput::default(), "error", "no exit code"),
        ];
        for (eval, input, verdict, detail) in cases {
            assert_eq!(
                run(eval, &input),
                (verdict.into(), Some(detail.into())),
                "{input:?}"
            );
        }
    }
}
