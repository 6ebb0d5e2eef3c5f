// SPDX-License-Identifier: GPL-3.0-or-later
//! Verification on arbitrary bytes (a log file someone may have edited). Oracles beyond
//! "no crash": a verified log's records all parse and its head is the last hash; a bad
//! log's first bad record lies within the file, everything before it verifies on its
//! own, and the message is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match anchor_audit::verify(data) {
        Ok(v) => {
            assert_eq!(v.hashes.len() as u64, v.records);
            assert_eq!(v.hashes.last().copied().unwrap_or(v.origin), v.head);
        }
        Err(bad) => {
            assert!(bad.offset <= data.len());
            assert!(bad.line >= 1);
            let good = anchor_audit::verify(&data[..bad.offset]).expect("the part before verifies");
            assert_eq!(good.records, bad.line - 1);
            assert!(!bad.to_string().contains('\n'));
        }
    }
});
