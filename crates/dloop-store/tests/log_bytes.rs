//! The log reader on hostile bytes (issue 13; the proptest twin of the fuzz target
//! `fuzz/fuzz_targets/log_reader.rs`): random bytes, and real logs with bytes flipped, cut or
//! spliced, either open into gapless records (a repair being final) or are refused cleanly.

use dloop_core::Timestamp;
use dloop_store::EventLog;
use dloop_store::conformance::{batch, check_log_bytes};
use proptest::prelude::*;

/// A real log of `sizes.len()` batches, as the store writes it.
fn real_log(sizes: &[usize]) -> Vec<u8> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("events.jsonl");
    let mut log = EventLog::create(&path).expect("create");
    for (i, n) in sizes.iter().enumerate() {
        log.append_batch(&batch(*n, "p"), Timestamp::from_millis(i as u64))
            .expect("append");
    }
    std::fs::read(&path).expect("read")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_open_as_records_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let tmp = tempfile::tempdir().expect("tempdir");
        check_log_bytes(tmp.path(), &bytes);
    }

    #[test]
    fn damaged_real_logs_open_as_a_prefix_or_are_refused(
        sizes in prop::collection::vec(1usize..4, 1..5),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        splice in any::<bool>(),
    ) {
        let clean = real_log(&sizes);
        let mut bytes = clean.clone();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if splice {
            bytes.extend_from_slice(&clean);
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let clean_records = check_log_bytes(tmp.path(), &clean).expect("a clean log opens");
        if let Some(records) = check_log_bytes(tmp.path(), &bytes) {
            // Whatever survives is what was written: damage is cut or refused, never believed.
            if !splice {
                prop_assert!(records.len() <= clean_records.len());
                prop_assert_eq!(&records[..], &clean_records[..records.len()]);
            }
        }
    }
}
