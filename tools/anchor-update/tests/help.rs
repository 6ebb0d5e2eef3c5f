// SPDX-License-Identifier: GPL-3.0-or-later
//! The help of anchor-update and anchor-uki describes every option and argument they take.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[test]
fn help_describes_every_option_and_argument() {
    let mut bad = Vec::new();
    for args in [&["bless"][..], &["status"], &["apply"]] {
        bad.extend(anchor_testkit::undocumented(
            env!("CARGO_BIN_EXE_anchor-update"),
            args,
        ));
    }
    for cmd in ["finalize", "pcr11", "policy", "pcrsig", "verify", "version"] {
        bad.extend(anchor_testkit::undocumented(
            env!("CARGO_BIN_EXE_anchor-uki"),
            &[cmd],
        ));
    }
    assert!(bad.is_empty(), "{bad:#?}");
}
