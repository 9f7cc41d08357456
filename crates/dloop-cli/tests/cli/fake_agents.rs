//! The fake agent CLIs of `tests/fixtures/agents/` print valid JSON Lines in every mode, with
//! the exit codes of the real CLIs.

use std::process::{Command, Stdio};

use crate::common::repo_root;

fn run(agent: &str, args: &[&str], mode: &str) -> (Vec<serde_json::Value>, i32) {
    let out = Command::new(repo_root().join("tests/fixtures/agents").join(agent))
        .args(args)
        .env("FAKE_AGENT_MODE", mode)
        .env("FAKE_AGENT_TEXT", "line \"one\"\nline\ttwo \\ ✓")
        .stdin(Stdio::null())
        .output()
        .expect("run fake agent");
    let lines = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{agent} {mode}: {e}: {l}")))
        .collect();
    (lines, out.status.code().unwrap_or(-1))
}

#[test]
fn every_agent_speaks_json_lines_in_every_mode() {
    let agents: [(&str, &[&str], &str); 4] = [
        (
            "claude",
            &[
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "fix it",
            ],
            "result",
        ),
        ("codex", &["exec", "--json", "fix it"], "turn.completed"),
        (
            "gemini",
            &["-p", "fix it", "--output-format", "stream-json"],
            "result",
        ),
        (
            "opencode",
            &["run", "--format", "json", "--", "fix", "it"],
            "done",
        ),
    ];
    for (agent, args, last) in agents {
        let (lines, code) = run(agent, args, "ok");
        assert_eq!(code, 0, "{agent}");
        assert_eq!(lines.last().expect("lines")["type"], last, "{agent}");
        // Gemini streams its answer as deltas: they concatenate to the text.
        let deltas: String = lines
            .iter()
            .filter(|l| l["role"] == "assistant")
            .filter_map(|l| l["content"].as_str())
            .collect();
        let text = serde_json::to_string(&lines).expect("json");
        assert!(
            text.contains(r#"line \"one\"\nline\ttwo \\ ✓"#)
                || deltas == "line \"one\"\nline\ttwo \\ ✓",
            "{agent}: {text}"
        );

        let (lines, code) = run(agent, args, "handoff");
        assert_eq!(code, 0, "{agent}");
        assert!(
            serde_json::to_string(&lines)
                .expect("json")
                .contains("CONTEXT_HANDOFF:")
        );

        let (lines, code) = run(agent, args, "mention_limit");
        assert_eq!(
            code, 0,
            "{agent}: a limit mentioned in an answer is no failure"
        );
        assert_eq!(lines.last().expect("lines")["type"], last, "{agent}");

        for mode in ["rate_limit_text", "auth"] {
            let (_, code) = run(agent, args, mode);
            assert!(
                code == 1 || (agent == "gemini" && code == 41),
                "{agent} {mode}: {code}"
            );
        }

        let (lines, code) = run(agent, args, "rate_limit");
        assert_eq!(code, 1, "{agent}");
        let text = serde_json::to_string(&lines).expect("json").to_lowercase();
        assert!(
            ["429", "limit", "quota", "exhausted"]
                .iter()
                .any(|p| text.contains(p)),
            "{agent}"
        );

        let (lines, code) = run(agent, args, "crash");
        assert_eq!(code, 1, "{agent}");
        assert!(
            !lines.iter().any(|l| l["type"] == last),
            "{agent}: crash has no terminal event"
        );
    }
}

#[test]
fn a_script_file_sets_the_mode_of_each_call_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("script");
    std::fs::write(&script, "rate_limit\nrate_limit\nok\n").expect("script");
    let codes: Vec<i32> = (0..4)
        .map(|_| {
            Command::new(repo_root().join("tests/fixtures/agents/codex"))
                .args(["exec", "--json", "-"])
                .env("FAKE_AGENT_SCRIPT", &script)
                .stdin(Stdio::null())
                .output()
                .expect("run fake agent")
                .status
                .code()
                .unwrap_or(-1)
        })
        .collect();
    assert_eq!(codes, [1, 1, 0, 0], "the last line repeats");
}
