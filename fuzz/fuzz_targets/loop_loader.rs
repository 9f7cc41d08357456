//! Fuzz target: bytes -> a validated loop or diagnostics (`check_loop`), never a panic; every
//! diagnostic renders against the source, and a loop that validates clean has its states.
//! Seeds: examples/*.yaml and the test fixtures (fuzz/corpus/loop_loader).

#![no_main]

use dloop_core::diagnostic::render;
use dloop_core::validate::check_loop;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let (parsed, diagnostics) = check_loop(bytes);
    let source = String::from_utf8_lossy(bytes);
    for d in &diagnostics {
        let _ = render(d, "fuzz.yaml", &source);
    }
    if let Some(parsed) = parsed {
        let loops = [("fuzz".to_owned(), &parsed)];
        let _ = dloop_core::validate::check_subloop_cycles(&loops);
    } else {
        assert!(!diagnostics.is_empty(), "a refusal says why");
    }
});
