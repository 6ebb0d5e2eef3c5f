// SPDX-License-Identifier: GPL-3.0-or-later
//! The anchor-vmm binary's command line (no KVM needed: every case fails before a VM).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::ffi::OsStrExt;
use std::process::Command;

const VMM: &str = env!("CARGO_BIN_EXE_anchor-vmm");

#[test]
fn an_argument_that_is_not_utf8_is_a_usage_error_not_a_panic() {
    let out = Command::new(VMM)
        .arg("--kernel")
        .arg(std::ffi::OsStr::from_bytes(b"/x\xff"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err, "anchor-vmm: argument \"/x\\xFF\" is not UTF-8\n");
}
