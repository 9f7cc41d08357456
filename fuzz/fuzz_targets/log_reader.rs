//! Fuzz target: bytes as `events.jsonl` -> gapless records or a clean refusal, never a panic; a
//! repair is final and the read-only stream agrees (`dloop_store::conformance::check_log_bytes`,
//! shared with the proptest in crates/dloop-store/tests/log_bytes.rs).
//! Seeds: real logs written by the store and the CLI (fuzz/corpus/log_reader).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One folder per fuzzing process, on tmpfs when there is one (the target writes a file per
/// input).
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = ["/dev/shm", "/tmp"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_dir())
            .expect("a temp folder");
        let dir = base.join(format!("dloop-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fuzz folder");
        dir
    })
}

fuzz_target!(|bytes: &[u8]| {
    let _ = dloop_store::conformance::check_log_bytes(dir(), bytes);
});
