//! Each CLI's headless command line (AGENT_CLIS.md): JSON stream flags, model, permission
//! mode, extra arguments (the profile's, then the state's), and session continuation.
//!
//! Invariants: the four agent CLIs always get the prompt on stdin, never as an argument (no
//! argv size limit, and a prompt starting with `-` cannot be read as a flag); a resumed session
//! id goes where the CLI cannot mistake it for a flag (`--resume=<id>` for Claude, whose
//! `--resume` takes an optional value); everything is built from the profile and the call
//! alone, so a command line is reproducible from the log.

use std::path::Path;

use dloop_core::config::{Base, PromptMode, ResolvedProfile};

use crate::actions::AgentCall;

/// How one invocation is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Extra environment (the profile's, and what the CLI needs).
    pub env: Vec<(String, String)>,
    /// What goes to stdin; `None` gives `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Whether a session is continued (the CLI is given the id).
    pub resumed: bool,
}

/// The invocation of `profile` for `call` with `prompt`, run in `cwd`. `prompt_file` is where
/// a `command` profile in [`PromptMode::File`] finds the prompt (the caller writes it).
pub fn invocation(
    profile: &ResolvedProfile,
    call: &AgentCall<'_>,
    prompt: &[u8],
    cwd: &Path,
    prompt_file: Option<&Path>,
) -> Invocation {
    let mut argv = profile.command.clone();
    let mut env = profile.env.clone();
    let model = call.model.or(profile.model.as_deref());
    let mode = profile.permission_mode.as_deref();
    let resume = call.resume_session.filter(|id| !id.is_empty());
    let extra = profile.args.iter().chain(call.extra_args).cloned();
    let mut stdin = Some(prompt.to_vec());
    let s = |x: &str| x.to_owned();
    match profile.base {
        Base::Claude => {
            argv.extend(["-p", "--output-format", "stream-json", "--verbose"].map(s));
            if let Some(mode) = mode {
                argv.extend([s("--permission-mode"), s(mode)]);
            }
            if let Some(model) = model {
                argv.extend([s("--model"), s(model)]);
            }
            if let Some(turns) = call.max_turns.or(profile.max_turns) {
                // Claude's own cap ends the run with a result line (the session stays
                // resumable); dloop still counts, as the cap has overrun.
                argv.extend([s("--max-turns"), turns.to_string()]);
            }
            if let Some(id) = resume {
                argv.push(format!("--resume={id}"));
            }
            argv.extend(extra);
        }
        Base::Codex => {
            argv.extend(["exec", "--json", "--skip-git-repo-check"].map(s));
            match mode {
                Some("bypass") => argv.push(s("--dangerously-bypass-approvals-and-sandbox")),
                Some(mode) => argv.extend([s("--sandbox"), s(mode)]),
                None => {}
            }
            if let Some(model) = model {
                argv.extend([s("--model"), s(model)]);
            }
            // Every flag before `resume`: `--sandbox` and friends are not accepted after it.
            argv.extend(extra);
            if let Some(id) = resume {
                argv.extend([s("resume"), s(id)]);
            }
            // `-`: read the prompt from stdin.
            argv.push(s("-"));
        }
        Base::Gemini => {
            argv.extend(["--output-format", "stream-json"].map(s));
            if let Some(mode) = mode {
                argv.extend([s("--approval-mode"), s(mode)]);
            }
            if let Some(model) = model {
                argv.extend([s("--model"), s(model)]);
            }
            if let Some(id) = resume {
                argv.extend([s("--resume"), s(id)]);
            }
            argv.extend(extra);
        }
        Base::Opencode => {
            argv.extend(["run", "--format", "json"].map(s));
            if let Some(model) = model {
                argv.extend([s("--model"), s(model)]);
            }
            if let Some(id) = resume {
                argv.extend([s("--session"), s(id)]);
            }
            argv.extend(extra);
            if mode == Some("auto") {
                env.push((s("OPENCODE_PERMISSION"), s(r#"{"*":"allow"}"#)));
            }
            // OpenCode takes its project from $PWD before the real cwd.
            env.push((s("PWD"), cwd.display().to_string()));
        }
        Base::Command => {
            let text = String::from_utf8_lossy(prompt);
            let file = prompt_file
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let mut placed = false;
            for arg in &mut argv {
                if profile.prompt == PromptMode::Arg && arg.contains("{prompt}") {
                    *arg = arg.replace("{prompt}", &text);
                    placed = true;
                }
                if profile.prompt == PromptMode::File && arg.contains("{prompt_file}") {
                    *arg = arg.replace("{prompt_file}", &file);
                    placed = true;
                }
            }
            argv.extend(extra);
            match profile.prompt {
                PromptMode::Stdin => {}
                PromptMode::Arg => {
                    if !placed {
                        argv.push(text.into_owned());
                    }
                    stdin = None;
                }
                PromptMode::File => {
                    if !placed {
                        argv.push(file);
                    }
                    stdin = None;
                }
            }
            return Invocation {
                argv,
                env,
                stdin,
                resumed: false,
            };
        }
    }
    Invocation {
        argv,
        env,
        stdin,
        resumed: resume.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dloop_core::config::parse_config;

    fn call<'a>(
        model: Option<&'a str>,
        args: &'a [String],
        resume: Option<&'a str>,
    ) -> AgentCall<'a> {
        AgentCall {
            profile: "x",
            model,
            extra_args: args,
            resume_session: resume,
            max_turns: None,
        }
    }

    fn argv(base: Base, c: &AgentCall<'_>) -> Vec<String> {
        invocation(
            &ResolvedProfile::builtin(base),
            c,
            b"the prompt",
            Path::new("/p"),
            None,
        )
        .argv
    }

    #[test]
    fn claude_resumes_in_the_equals_form_and_reads_the_prompt_on_stdin() {
        let args = vec!["--add-dir".to_owned(), "/x".to_owned()];
        let inv = invocation(
            &ResolvedProfile::builtin(Base::Claude),
            &call(Some("opus"), &args, Some("-abc")),
            b"the prompt",
            Path::new("/p"),
            None,
        );
        assert_eq!(
            inv.argv,
            [
                "claude",
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "acceptEdits",
                "--model",
                "opus",
                "--resume=-abc",
                "--add-dir",
                "/x"
            ]
        );
        assert_eq!(inv.stdin.as_deref(), Some(&b"the prompt"[..]));
        assert!(inv.resumed);
        assert!(!inv.argv.iter().any(|a| a.contains("the prompt")));
    }

    #[test]
    fn codex_puts_every_flag_before_resume_and_reads_stdin() {
        assert_eq!(
            argv(Base::Codex, &call(Some("gpt-5-codex"), &[], Some("019f"))),
            [
                "codex",
                "exec",
                "--json",
                "--skip-git-repo-check",
                "--sandbox",
                "workspace-write",
                "--model",
                "gpt-5-codex",
                "resume",
                "019f",
                "-"
            ]
        );
        let config = parse_config(
            b"runners:\n  codex: { permission_mode: bypass, args: [-c, 'web_search=\"live\"'] }\n",
        )
        .expect("valid");
        let inv = invocation(
            config.profile("codex").expect("codex"),
            &call(None, &[], None),
            b"p",
            Path::new("/p"),
            None,
        );
        assert_eq!(
            inv.argv,
            [
                "codex",
                "exec",
                "--json",
                "--skip-git-repo-check",
                "--dangerously-bypass-approvals-and-sandbox",
                "-c",
                "web_search=\"live\"",
                "-"
            ]
        );
        assert!(!inv.resumed);
    }

    #[test]
    fn gemini_and_opencode() {
        assert_eq!(
            argv(
                Base::Gemini,
                &call(Some("gemini-2.5-pro"), &[], Some("6c0e"))
            ),
            [
                "gemini",
                "--output-format",
                "stream-json",
                "--approval-mode",
                "auto_edit",
                "--model",
                "gemini-2.5-pro",
                "--resume",
                "6c0e"
            ]
        );
        let inv = invocation(
            &ResolvedProfile::builtin(Base::Opencode),
            &call(Some("anthropic/claude-sonnet-4-5"), &[], Some("ses_1")),
            b"p",
            Path::new("/proj"),
            None,
        );
        assert_eq!(
            inv.argv,
            [
                "opencode",
                "run",
                "--format",
                "json",
                "--model",
                "anthropic/claude-sonnet-4-5",
                "--session",
                "ses_1"
            ]
        );
        assert!(inv.env.contains(&("PWD".to_owned(), "/proj".to_owned())));
        assert!(!inv.env.iter().any(|(k, _)| k == "OPENCODE_PERMISSION"));
        let config =
            parse_config(b"runners:\n  opencode: { permission_mode: auto }\n").expect("valid");
        let inv = invocation(
            config.profile("opencode").expect("p"),
            &call(None, &[], None),
            b"p",
            Path::new("/p"),
            None,
        );
        assert!(inv.env.contains(&(
            "OPENCODE_PERMISSION".to_owned(),
            r#"{"*":"allow"}"#.to_owned()
        )));
    }

    #[test]
    fn the_turn_cap_is_passed_to_claude_too() {
        let mut c = call(None, &[], None);
        c.max_turns = Some(7);
        let a = argv(Base::Claude, &c);
        assert!(a.windows(2).any(|w| w == ["--max-turns", "7"]), "{a:?}");
    }

    #[test]
    fn command_profiles_place_the_prompt_as_configured() {
        let config = parse_config(
            b"runners:\n  a: { base: command, command: [echo, 'say: {prompt}'] }\n  b: { base: command, command: [cat, --file, '{prompt_file}'] }\n  c: { base: command, command: [wc], args: [-c] }\n  d: { base: command, command: [echo], prompt: arg }\n",
        )
        .expect("valid");
        let run = |name: &str| {
            invocation(
                config.profile(name).expect(name),
                &call(None, &[], Some("ignored")),
                b"hi there",
                Path::new("/p"),
                Some(Path::new("/s/prompt-3.txt")),
            )
        };
        let a = run("a");
        assert_eq!(a.argv, ["echo", "say: hi there"]);
        assert_eq!(a.stdin, None);
        assert!(!a.resumed);
        assert_eq!(run("b").argv, ["cat", "--file", "/s/prompt-3.txt"]);
        let c = run("c");
        assert_eq!(c.argv, ["wc", "-c"]);
        assert_eq!(c.stdin.as_deref(), Some(&b"hi there"[..]));
        assert_eq!(run("d").argv, ["echo", "hi there"]);
    }
}
