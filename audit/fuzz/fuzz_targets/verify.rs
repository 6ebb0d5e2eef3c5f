// SPDX-License-Identifier: GPL-3.0-or-later
//! Verification on arbitrary bytes (a log file someone may have edited). Oracles beyond
//! "no crash": a verified log's records all parse and its head is the last hash; a bad
//! log's first bad record lies within the file, everything before it verifies on its
//! own, and the message is one line. The anchoring step's check from the end agrees
//! with the whole log: anchored at any record of a verified log, it finds that record
//! and the same records after it; on any end of any bytes it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let any = anchor_audit::Anchor {
        count: data.len() as u64 % 5,
        head: [0; 32],
    };
    let _ = anchor_audit::locate_anchored(&data[cut..], false, &any);
    match anchor_audit::verify(data) {
        Ok(v) => {
            assert_eq!(v.hashes.len() as u64, v.records);
            assert_eq!(v.hashes.last().copied().unwrap_or(v.origin), v.head);
            if v.records > 0 {
                let k = 1 + (data.len() as u64 % v.records);
                let i = (k - 1) as usize;
                let anchor = anchor_audit::Anchor {
                    count: k,
                    head: v.hashes[i],
                };
                match anchor_audit::locate_anchored(data, true, &anchor) {
                    anchor_audit::Located::At { offset, seq, lag } => {
                        assert_eq!((seq, lag), (k, false));
                        let after = anchor_audit::Chain::resume(k, v.hashes[i]);
                        let tail = anchor_audit::verify_after(after, &data[offset..])
                            .expect("what follows an anchored record of a verified log");
                        assert_eq!((tail.records, tail.head), (v.records, v.head));
                        assert_eq!(tail.digests, v.digests[i + 1..].to_vec());
                    }
                    other => panic!("record {k} of a verified log not found: {other:?}"),
                }
            }
        }
        Err(bad) => {
            assert!(bad.offset <= data.len());
            assert!(bad.line >= 1);
            let good = anchor_audit::verify(&data[..bad.offset]).expect("the part before verifies");
            // Every line before it is a record or a torn append skipped.
            assert_eq!(good.records + good.torn.len() as u64, bad.line - 1);
            assert!(!bad.to_string().contains('\n'));
        }
    }
});
