// SPDX-License-Identifier: GPL-3.0-or-later
//! A crash in a namespace room must not reach a core dump helper of the host. A
//! core_pattern that starts with `|` (systemd-coredump, apport) makes the kernel run that
//! program as host root, in the host's namespaces, with the crashed process's memory on
//! its standard input; the kernel ignores a core limit of 0 for it. This test points the
//! host's core_pattern at a helper of its own for as long as the room's probe crashes
//! (`anchor-escape-probe core-dump`), then puts the host's pattern back.
//!
//! Needs root, and `make images` (static binaries + the base image) done first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ns_policy, Bay0, Console, PROBE};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

/// The host's core_pattern, set to `pattern` until dropped.
struct Pattern(String);

impl Pattern {
    fn set(pattern: &str) -> Pattern {
        let old = std::fs::read_to_string(CORE_PATTERN).unwrap();
        std::fs::write(CORE_PATTERN, pattern).unwrap();
        Pattern(old)
    }
}

impl Drop for Pattern {
    fn drop(&mut self) {
        let _ = std::fs::write(CORE_PATTERN, self.0.trim_end());
    }
}

#[test]
fn a_crash_in_a_namespace_room_runs_no_core_dump_helper_of_the_host() {
    let room = "core-a";
    let b = Bay0::start("core", &[(room, ns_policy(room, 64, 32))]);
    assert!(
        b.answer(&format!("start {room}"))
            .starts_with("ok room core-a ready"),
        "{}",
        b.log()
    );
    let mut c = Console::attach(&b, room);
    // The helper the kernel would run as root: it records who crashed and drains the dump.
    let helper = b.dir.join("core-helper");
    let log = b.dir.join("core-helper.log");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\necho \"uid=$1 comm=$2\" >>{}\ncat >/dev/null\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (lines, status) = {
        let _pattern = Pattern::set(&format!("|{} %u %e", helper.display()));
        c.run(&format!("{PROBE} core-dump"), "", Duration::from_secs(60))
    };
    let text = lines.join("\n");
    eprintln!("{text}");
    assert_eq!(status, 0, "{text}");
    let verdict = lines
        .iter()
        .find(|l| l.contains(" core-dump: "))
        .unwrap_or_else(|| panic!("no verdict: {text}"));
    // The helper's record, if it ran for the room's crash (other crashes on this host in
    // the meantime, of other programs, are not this test's).
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    let ours: Vec<&str> = ran
        .lines()
        .filter(|l| l.ends_with(&format!("comm={}", anchor_escape::CRASH_COMM)))
        .collect();
    assert!(
        verdict.starts_with("BLOCKED core-dump: ") && ours.is_empty(),
        "{verdict}\nthe host's core dump helper ran for the room: {ours:?}"
    );
    assert!(verdict.contains("core_pattern '|"), "{verdict}");
    assert!(Path::new(&helper).exists());
    assert_eq!(
        b.answer(&format!("stop {room}")),
        format!("ok room {room} stopped")
    );
}
