// SPDX-License-Identifier: GPL-3.0-or-later
//! The help of anchor-update and anchor-uki describes every option and argument they take.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// The options and arguments `BIN ARGS -h` lists without a description.
fn undocumented(bin: &str, args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(bin)
        .args(args)
        .arg("-h")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    let mut listing = false;
    let mut bad = Vec::new();
    for line in help.lines() {
        if line == "Options:" || line == "Arguments:" {
            listing = true;
        } else if line.is_empty() {
            listing = false;
        } else if listing && line.starts_with("  ") {
            let item = line.trim_start();
            let about = item.split_once("  ").map_or("", |(_, a)| a.trim());
            if about.is_empty() || about.starts_with('[') {
                bad.push(format!("{args:?}: {item}"));
            }
        }
    }
    bad
}

#[test]
fn help_describes_every_option_and_argument() {
    let mut bad = Vec::new();
    for args in [&["bless"][..], &["status"], &["apply"]] {
        bad.extend(undocumented(env!("CARGO_BIN_EXE_anchor-update"), args));
    }
    for cmd in ["finalize", "pcr11", "policy", "pcrsig", "verify", "version"] {
        bad.extend(undocumented(env!("CARGO_BIN_EXE_anchor-uki"), &[cmd]));
    }
    assert!(bad.is_empty(), "{bad:#?}");
}
