//! Property tests of the agent stream readers: fed in any chunks, a stream reads the same as fed
//! whole, and no bytes (kept transcripts cut, spliced and flipped, or garbage) make a reader
//! panic. The fuzz target `agent_streams` (fuzz/) checks the same property for longer.

use dloop_core::config::Base;
use dloop_runtime::actions::agents::assert_chunking_invariant;
use proptest::prelude::*;

/// The kept transcripts of tests/fixtures/agent-streams/, with the CLI each speaks.
fn samples() -> Vec<(Base, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent-streams");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let base = Base::ALL
            .into_iter()
            .find(|b| name.starts_with(b.as_str()))
            .unwrap_or(Base::Command);
        out.push((base, std::fs::read(&path).expect("read")));
    }
    assert!(out.len() >= 4, "the fixtures are there");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn kept_transcripts_read_the_same_in_any_chunks(
        pick in 0usize..64,
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let samples = samples();
        let (base, bytes) = &samples[pick % samples.len()];
        assert_chunking_invariant(*base, bytes, &cuts);
    }

    #[test]
    fn damaged_transcripts_never_panic_and_read_the_same_in_chunks(
        pick in 0usize..64,
        base_pick in 0usize..5,
        cut_at in any::<usize>(),
        splice in any::<usize>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let samples = samples();
        let (_, original) = &samples[pick % samples.len()];
        let other = &samples[splice % samples.len()].1;
        // Cut the transcript somewhere, splice another in, and flip a few bytes.
        let mut bytes = original[..cut_at % (original.len() + 1)].to_vec();
        bytes.extend_from_slice(&other[splice % (other.len() + 1)..]);
        for (at, value) in flips {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = value;
            }
        }
        let base = Base::ALL[base_pick % Base::ALL.len()];
        assert_chunking_invariant(base, &bytes, &cuts);
    }

    #[test]
    fn garbage_never_panics(
        base_pick in 0usize..5,
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let base = Base::ALL[base_pick % Base::ALL.len()];
        assert_chunking_invariant(base, &bytes, &cuts);
    }
}
