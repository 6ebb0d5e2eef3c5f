// SPDX-License-Identifier: GPL-3.0-or-later
//! Parser + validator on arbitrary bytes. Oracles beyond "no crash": every problem names
//! the file and is one line without control characters, and an accepted policy's `show`
//! output parses back to an equal policy.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match anchor_policy::parse("fuzz.toml", data) {
        Ok(policy) => {
            let shown = policy.to_toml().expect("an accepted policy serializes");
            let again = anchor_policy::parse("shown.toml", shown.as_bytes())
                .expect("show output is a valid policy");
            assert_eq!(again, policy, "show output means something else");
        }
        Err(e) => {
            assert!(!e.problems().is_empty());
            for p in e.problems() {
                let line = p.to_string();
                assert!(line.starts_with("fuzz.toml"), "{line}");
                assert!(!line.chars().any(char::is_control), "{line:?}");
                assert!(line.len() < 4096, "problem line of {} bytes", line.len());
            }
        }
    }
});
