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

#[test]
fn an_argument_that_is_not_utf8_is_a_usage_error_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let out = agent()
        .arg(std::ffi::OsStr::from_bytes(b"--parse-cmdline\xff"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr, "anchor-agent: usage: an argument is not UTF-8\n");
}

#[test]
fn parse_cmdline_names_the_file_it_cannot_read() {
    let dir = std::env::temp_dir().join(format!("anchor-agent-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_utf8 = dir.join("cmdline");
    std::fs::write(&not_utf8, b"anchor.room=web \xff\n").unwrap();
    let missing = dir.join("missing");
    for (file, why) in [
        (&not_utf8, "stream did not contain valid UTF-8"),
        (&missing, "No such file or directory"),
        (&dir, "Is a directory"),
    ] {
        let out = agent().arg("--parse-cmdline").arg(file).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.starts_with(&format!(
                "anchor-agent: cannot read command line file {}: {why}",
                file.display()
            )) && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
