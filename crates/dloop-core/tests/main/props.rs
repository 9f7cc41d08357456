//! No input makes parsing, validation or rendering panic.

use dloop_core::diagnostic::render;
use dloop_core::validate::check_loop;
use proptest::prelude::*;

fn check_all(bytes: &[u8]) {
    let (parsed, diags) = check_loop(bytes);
    let source = String::from_utf8_lossy(bytes);
    for d in &diags {
        let _ = render(d, "f.yaml", &source);
    }
    if let Some(parsed) = parsed {
        let loops = [("f".to_owned(), &parsed)];
        let _ = dloop_core::validate::check_subloop_cycles(&loops);
    }
}

/// Text made of loop-file pieces, so the generator often reaches deep into validation.
fn loopish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "initial: a\n",
        "states:\n",
        "  a:\n",
        "  b:\n",
        "    shell: x ${context.k}\n",
        "    prompt: |\n      ${captured.t.output}\n",
        "    next: b\n",
        "    on: { success: a }\n",
        "    terminal: success\n",
        "    loop: f\n",
        "    evaluate: classify\n",
        "&x [1, *x]\n",
        "    capture: t\n",
        "- ",
        ": ",
        "{",
        "}",
        "[",
        "]",
        "\t",
        "é",
        "'",
        "\"",
        "---\n",
        "#",
        "    evaluate: { type: contains, pattern: '(' }\n",
        "limits: { max_steps: -1 }\n",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_all(&bytes);
    }

    #[test]
    fn arbitrary_strings_never_panic(text in ".{0,256}") {
        check_all(text.as_bytes());
    }

    #[test]
    fn loop_like_text_never_panics(text in loopish()) {
        check_all(text.as_bytes());
    }
}
