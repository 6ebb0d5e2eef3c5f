// SPDX-License-Identifier: GPL-3.0-or-later
//! The agent binary outside PID 1: settings check and usage errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_anchor-agent"))
}

#[test]
fn parse_cmdline_reports_settings_and_warnings() {
    let dir = std::env::temp_dir().join(format!("anchor-agent-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cmdline");
    std::fs::write(
        &file,
        "console=ttyS0 quiet reboot=k root=/dev/vda ro anchor.room=web anchor.vsock_echo=5000 anchor.exit=nope\n",
    )
    .unwrap();
    let out = agent().arg("--parse-cmdline").arg(&file).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout,
        "room=web\nexit=Reboot\nshell=true\nvsock_echo=5000\n"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("anchor.exit=\"nope\""), "{stderr}");
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    for args in [&[][..], &["--vsock-echo", "0"][..], &["--bogus"][..]] {
        let out = agent().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with("anchor-agent: usage:"), "{stderr}");
    }
}
