//! Kept agent streams: the real CLI transcripts of `tests/fixtures/agent-streams/` read back
//! by [`transcript`] and [`StreamReader`] (activities, outcomes, session ids and token figures),
//! whole and in chunks of every size, without running any process.

use std::path::Path;

use dloop_core::config::Base;
use dloop_core::event::{AgentOutcome, TokenUsage};
use dloop_runtime::actions::AgentActivity;
use dloop_runtime::actions::agents::{StreamReader, transcript};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agent-streams")
            .join(name),
    )
    .expect("fixture")
}

#[test]
fn kept_streams_read_back_as_activities_and_outcomes() {
    let table: [(&str, &str, AgentOutcome); 8] = [
        ("claude", "claude-success.jsonl", AgentOutcome::Success),
        (
            "claude",
            "claude-rate-limit.jsonl",
            AgentOutcome::RateLimited,
        ),
        ("codex", "codex-success.jsonl", AgentOutcome::Success),
        ("codex", "codex-rate-limit.jsonl", AgentOutcome::RateLimited),
        ("gemini", "gemini-success.jsonl", AgentOutcome::Success),
        ("gemini", "gemini-quota.jsonl", AgentOutcome::RateLimited),
        ("opencode", "opencode-success.jsonl", AgentOutcome::Success),
        (
            "opencode",
            "opencode-rate-limit.jsonl",
            AgentOutcome::RateLimited,
        ),
    ];
    for (base, file, outcome) in table {
        let activities = transcript(base, &fixture(file));
        assert!(
            matches!(activities.last(), Some(AgentActivity::Finished { outcome: o, .. }) if *o == outcome),
            "{file}: {activities:?}"
        );
        if outcome == AgentOutcome::Success {
            assert!(
                activities.iter().any(|a| matches!(a, AgentActivity::Tool { detail, .. } if detail.contains("cargo test"))),
                "{file}: {activities:?}"
            );
            assert!(
                activities
                    .iter()
                    .any(|a| matches!(a, AgentActivity::Text(_))),
                "{file}"
            );
        }
    }
    assert!(transcript("nope", b"{}").is_empty());
    // A stream cut before its terminal event has no Finished.
    let cut = fixture("claude-success.jsonl");
    let cut = &cut[..cut.len() / 2];
    assert!(
        !transcript("claude", cut)
            .iter()
            .any(|a| matches!(a, AgentActivity::Finished { .. }))
    );
}

#[test]
fn kept_streams_give_the_figures_of_each_cli() {
    let summary = |base: Base, file: &str, chunk: usize| {
        let bytes = fixture(file);
        let mut reader = StreamReader::new(base);
        // Fed in small pieces: lines are put back together across chunks.
        for piece in bytes.chunks(chunk) {
            reader.feed(piece, &mut |_| {});
        }
        reader.finish(&mut |_| {})
    };
    let claude = summary(Base::Claude, "claude-success.jsonl", 7);
    assert_eq!(claude.final_text.as_deref(), Some("All 12 tests pass."));
    assert_eq!(claude.turns, Some(3));
    assert_eq!(claude.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(
        claude.tokens,
        TokenUsage {
            input: 8,
            output: 70,
            cached: 25542,
            cache_write: 1520
        }
    );
    let reset = summary(Base::Claude, "claude-reset.jsonl", 64);
    assert_eq!(
        reset.session_id.as_deref(),
        Some("9a8b7c6d-0000-4000-8000-000000000002")
    );
    assert_eq!(
        reset.tokens,
        TokenUsage {
            input: 13,
            output: 24,
            cached: 100,
            cache_write: 5
        }
    );
    let codex = summary(Base::Codex, "codex-success.jsonl", 13);
    assert_eq!(
        codex.final_text.as_deref(),
        Some("Fixed the off-by-one in src/lib.rs; all 12 tests pass.")
    );
    assert_eq!(codex.model.as_deref(), Some("gpt-5.1-codex"));
    assert_eq!(
        codex.tokens,
        TokenUsage {
            input: 315,
            output: 122,
            cached: 24448,
            cache_write: 0
        }
    );
    let gemini = summary(Base::Gemini, "gemini-success.jsonl", 5);
    assert_eq!(
        gemini.final_text.as_deref(),
        Some("All 12 tests pass; nothing to fix.")
    );
    assert_eq!(gemini.turns, Some(2));
    let quota = summary(Base::Gemini, "gemini-quota.jsonl", 100);
    assert!(
        quota
            .message
            .as_deref()
            .is_some_and(|m| m.contains("exhausted your capacity"))
    );
    let opencode = summary(Base::Opencode, "opencode-success.jsonl", 11);
    assert_eq!(opencode.final_text.as_deref(), Some("All 12 tests pass."));
    assert_eq!(opencode.turns, Some(2));
    assert!((opencode.cost_usd.expect("cost") - 0.0164).abs() < 1e-9);
}
