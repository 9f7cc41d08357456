//! Fuzz target: bytes -> each agent CLI's stream reader (claude, codex, gemini, opencode,
//! command), fed whole and in chunks cut where the input says: never a panic, and the same
//! activities and summary either way (`assert_chunking_invariant`). The first byte picks the
//! CLI, the next eight the cut points. Seeds: the kept transcripts of
//! crates/dloop-runtime/tests/fixtures/agent-streams/ (fuzz/corpus/agent_streams).

#![no_main]

use dloop_core::config::Base;
use dloop_runtime::actions::agents::assert_chunking_invariant;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&pick, rest)) = bytes.split_first() else {
        return;
    };
    let base = Base::ALL[usize::from(pick) % Base::ALL.len()];
    let (cut_bytes, stream) = rest.split_at(rest.len().min(8));
    let cuts: Vec<usize> = cut_bytes.iter().map(|b| usize::from(*b) * 97).collect();
    assert_chunking_invariant(base, stream, &cuts);
});
