//! The replay key of an action call: SHA-256 (hex) of what the call asks for, recorded with its
//! result (`input_sha256` of `action_finished` and `judged`) so `dloop replay` can tell whether a
//! step of a new execution may reuse a recorded result.
//!
//! What goes in, each field length-prefixed so no two calls share an encoding: the state, the
//! action kind, the rendered bytes (the shell script as rendered, or the prompt as sent), and
//! for an agent call its profile, model, extra arguments and `max_turns`. The run's own id and
//! its `${run.dir}` path are replaced by fixed markers first: a replay is a different run, and a
//! command writing to `${run.dir}/x` asks for the same thing in both. The environment, the
//! idempotency key and the limits are left out: they name the run, not the work.
//!
//! Cost: one SHA-256 pass over the rendered text per action (microseconds next to a spawn).

use sha2::{Digest, Sha256};

use crate::actions::ActionRequest;
use crate::actions::output::hex;

/// Version tag of the encoding: a change to it makes every older key differ.
const TAG: &[u8] = b"dloop-replay-key-v1";

/// The replay key of `request` (see the module docs).
pub fn input_sha256(request: &ActionRequest<'_>) -> String {
    let env = |name: &str| {
        request
            .env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let mut hasher = Sha256::new();
    field(&mut hasher, TAG);
    field(&mut hasher, request.pending.state.as_bytes());
    let kind = match request.pending.kind {
        dloop_core::event::ActionKind::Shell => "shell",
        dloop_core::event::ActionKind::Prompt => "prompt",
        dloop_core::event::ActionKind::SubLoop => "loop",
    };
    field(&mut hasher, kind.as_bytes());
    // Longest marker first: the run folder's path holds the run id.
    let markers = [
        (env("DLOOP_RUN_DIR"), b"${run.dir}".as_slice()),
        (env("DLOOP_RUN_ID"), b"${run.id}".as_slice()),
    ];
    field(&mut hasher, &normalized(request.text, &markers));
    match &request.agent {
        Some(call) => {
            field(&mut hasher, b"agent");
            field(&mut hasher, call.profile.as_bytes());
            field(&mut hasher, call.model.unwrap_or_default().as_bytes());
            field(&mut hasher, &(call.extra_args.len() as u64).to_le_bytes());
            for arg in call.extra_args {
                field(&mut hasher, arg.as_bytes());
            }
            let turns = call.max_turns.map_or_else(String::new, |n| n.to_string());
            field(&mut hasher, turns.as_bytes());
        }
        None => field(&mut hasher, b"no agent"),
    }
    hex(&hasher.finalize())
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// `text` with every occurrence of each marker's value replaced by the marker (values tried in
/// order at each position; empty or absent values are skipped).
fn normalized(text: &[u8], markers: &[(Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < text.len() {
        for (value, marker) in markers {
            if let Some(value) = value
                && text[i..].starts_with(value.as_bytes())
            {
                out.extend_from_slice(marker);
                i += value.len();
                continue 'scan;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use dloop_core::event::ActionKind;
    use dloop_core::state::PendingAction;

    use super::*;
    use crate::actions::AgentCall;
    use crate::process::Limits;

    fn pending(state: &str, kind: ActionKind) -> PendingAction {
        PendingAction {
            state: state.to_owned(),
            step: 1,
            kind,
            idempotency_key: "k".to_owned(),
            output_path: String::new(),
            output_offset: None,
            profile: None,
            prompt: None,
            continues_session: None,
            session_id: None,
        }
    }

    fn key(pending: &PendingAction, text: &str, run: &str, agent: Option<AgentCall<'_>>) -> String {
        let env = [
            ("DLOOP_RUN_ID".to_owned(), run.to_owned()),
            (
                "DLOOP_RUN_DIR".to_owned(),
                format!("/p/.loops/.dloop/runs/{run}/work"),
            ),
        ];
        input_sha256(&ActionRequest {
            pending,
            text: text.as_bytes(),
            env: &env,
            cwd: Path::new("/p"),
            scratch: Path::new("/p/s"),
            limits: Limits::default(),
            agent,
        })
    }

    #[test]
    fn the_run_id_and_folder_do_not_change_the_key_but_the_text_does() {
        let a = pending("test", ActionKind::Shell);
        let in_run = |run: &str| format!("echo {run} > /p/.loops/.dloop/runs/{run}/work/x");
        assert_eq!(
            key(&a, &in_run("l-1"), "l-1", None),
            key(&a, &in_run("l-2"), "l-2", None)
        );
        assert_ne!(
            key(&a, "echo a", "l-1", None),
            key(&a, "echo b", "l-1", None)
        );
        let b = pending("other", ActionKind::Shell);
        assert_ne!(
            key(&a, "echo a", "l-1", None),
            key(&b, "echo a", "l-1", None)
        );
    }

    #[test]
    fn every_input_of_an_agent_call_counts() {
        let p = pending("fix", ActionKind::Prompt);
        let args = ["--x".to_owned()];
        let call = |profile, model, extra_args, max_turns| AgentCall {
            profile,
            model,
            extra_args,
            resume_session: None,
            max_turns,
        };
        let base = key(&p, "fix it", "r", Some(call("claude", None, &[], None)));
        for other in [
            call("codex", None, &[], None),
            call("claude", Some("opus"), &[], None),
            call("claude", None, &args, None),
            call("claude", None, &[], Some(3)),
        ] {
            assert_ne!(base, key(&p, "fix it", "r", Some(other)));
        }
        assert_ne!(base, key(&p, "fix it", "r", None));
        assert_eq!(
            base,
            key(&p, "fix it", "r", Some(call("claude", None, &[], None)))
        );
    }
}
