// SPDX-License-Identifier: GPL-3.0-or-later
//! Appending records with arbitrary field values (what a room may send). Oracles: every
//! line written is one printable-ASCII line, the log verifies, and each value reads
//! back exactly as given (no value can forge or split a record).
#![no_main]

use anchor_audit::{Chain, Entry, Record, MAX_RECORD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut chain = Chain::new();
    let mut log = Vec::new();
    let mut buf = [0u8; MAX_RECORD];
    let mut values = Vec::new();
    for (i, value) in data.split(|&b| b == 0xff).take(8).enumerate() {
        let fields: [(&str, &[u8]); 1] = [("value", value)];
        let entry = Entry {
            time: i as u64,
            actor: "room",
            event: "fuzz",
            fields: &fields,
        };
        if chain.append(&mut log, &entry, &mut buf).is_ok() {
            values.push(value.to_vec());
        }
    }
    assert!(log.iter().all(|&b| b == b'\n' || (0x20..0x7f).contains(&b)));
    let v = anchor_audit::verify(&log).expect("an appended log verifies");
    assert_eq!(v.records, values.len() as u64);
    for (line, value) in log.split(|&b| b == b'\n').zip(&values) {
        let r = Record::parse(line).expect("each line parses");
        assert_eq!(r.field("value"), Some(value.as_slice()));
    }
});
