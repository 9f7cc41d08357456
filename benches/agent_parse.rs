//! Parses a generated 100 MB Claude stream-json transcript (tool calls, tool results, text,
//! a result line) through the agent runner's line splitter and Claude parser, as it would
//! arrive from the CLI in 64 KiB chunks. Prints the throughput (budget: at least 200 MB/s)
//! and the process's peak RSS (budget: at most 10 MB; it must not grow with the transcript,
//! so the transcript is generated chunk by chunk, never held whole).
//!
//! Run: `cargo bench -p dloop-benches --bench agent_parse` (`AGENT_PARSE_MB=1000` for more).

use std::time::Instant;

use dloop_core::config::Base;
use dloop_runtime::actions::agents::StreamReader;

const SESSION: &str = "4f1c2b9e-7a3d-4c55-9f0e-2b8d6a1e3c70";

/// The `n`th exchange: an assistant tool call, its (large) result, and some text.
fn exchange(n: u64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let _ = writeln!(
        out,
        r#"{{"type":"assistant","message":{{"id":"msg_{n}","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{{"type":"tool_use","id":"toolu_{n}","name":"Bash","input":{{"command":"cargo test --package dloop-{n}","description":"Run tests"}}}}],"stop_reason":null,"usage":{{"input_tokens":4,"cache_creation_input_tokens":1520,"cache_read_input_tokens":12011,"output_tokens":61}}}},"parent_tool_use_id":null,"session_id":"{SESSION}","uuid":"6513270e-269e-4d37-b2a7-4de452e6b438"}}"#
    );
    let body = "test tests::case_ok ... ok\\n".repeat(40);
    let _ = writeln!(
        out,
        r#"{{"type":"user","message":{{"role":"user","content":[{{"tool_use_id":"toolu_{n}","type":"tool_result","content":"{body}test result: ok. 40 passed","is_error":false}}]}},"parent_tool_use_id":null,"session_id":"{SESSION}","uuid":"d23f0824-128b-4f33-8c5c-7fd0a6a3a450"}}"#
    );
    let _ = writeln!(
        out,
        r#"{{"type":"assistant","message":{{"id":"msg_t{n}","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{{"type":"text","text":"Step {n}: the tests pass; moving on to the next \"module\" and its edge cases."}}],"stop_reason":"end_turn","usage":{{"input_tokens":4,"cache_creation_input_tokens":0,"cache_read_input_tokens":13531,"output_tokens":9}}}},"parent_tool_use_id":null,"session_id":"{SESSION}","uuid":"9531985d-5d9d-49f8-9818-e811892f902b"}}"#
    );
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no other arguments.
    let megabytes: u64 = std::env::var("AGENT_PARSE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let target = megabytes * 1_000_000;
    let before = peak_rss_kib().unwrap_or(0);
    let mut reader = StreamReader::new(Base::Claude);
    let mut activities = 0u64;
    let mut pending = Vec::with_capacity(128 * 1024);
    let mut fed = 0u64;
    let mut n = 0u64;
    let mut generating = std::time::Duration::ZERO;
    let started = Instant::now();
    let init = format!(
        "{{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"{SESSION}\",\"model\":\"claude-sonnet-4-5-20250929\"}}\n"
    );
    reader.feed(init.as_bytes(), &mut |_| activities += 1);
    while fed < target {
        let t = Instant::now();
        pending.clear();
        while pending.len() < 64 * 1024 {
            exchange(n, &mut pending);
            n += 1;
        }
        generating += t.elapsed();
        // The CLI's pipe hands out 64 KiB reads that cut lines anywhere.
        for chunk in pending.chunks(65_536) {
            reader.feed(chunk, &mut |_| activities += 1);
        }
        fed += pending.len() as u64;
    }
    let result = format!(
        "{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"num_turns\":{n},\"result\":\"done\",\"session_id\":\"{SESSION}\",\"total_cost_usd\":1.5,\"usage\":{{\"input_tokens\":8,\"output_tokens\":70}},\"terminal_reason\":\"completed\"}}\n"
    );
    reader.feed(result.as_bytes(), &mut |_| activities += 1);
    let summary = reader.finish(&mut |_| activities += 1);
    let parsing = started.elapsed() - generating;
    assert_eq!(summary.final_text.as_deref(), Some("done"));
    assert_eq!(summary.turns, Some(n));
    #[allow(clippy::cast_precision_loss)] // a rate shown to one decimal
    let rate = fed as f64 / 1e6 / parsing.as_secs_f64();
    println!(
        "agent_parse/claude: {:.1} MB in {} exchanges, {activities} activities: parse {:.2} s = {rate:.1} MB/s (generation {:.2} s not counted)",
        fed as f64 / 1e6,
        n,
        parsing.as_secs_f64(),
        generating.as_secs_f64()
    );
    println!(
        "agent_parse/claude: peak RSS {} KiB (at start {} KiB)",
        peak_rss_kib().unwrap_or(0),
        before
    );
}
