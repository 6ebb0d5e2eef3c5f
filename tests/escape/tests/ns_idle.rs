// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's event loop sleeps while a namespace room idles. A namespace room's jail hands
//! its stderr pipe on to nobody (the agent it becomes writes to the console), so the pipe
//! reports EPOLLHUP for the room's whole life; bay0 must stop watching it then, or its
//! single-threaded loop spins on a full core (PID 1 burning the battery of a machine that
//! runs rooms without KVM). Counted in read(2) calls, not CPU time, so load elsewhere on
//! the machine cannot hide a spin: a spinning loop reads that pipe ~100,000 times a second.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ns_policy, Bay0};
use std::time::Duration;

/// read(2) calls `pid` has made so far (/proc/PID/io `syscr`).
fn read_calls(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscr:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn bay0_sleeps_while_a_namespace_room_idles() {
    let b = Bay0::start("idle", &[("idle", ns_policy("idle", 256, 64))]);
    let ok = b.answer("start idle");
    assert!(ok.starts_with("ok room idle ready"), "{ok}");
    let bay0 = b.pid();
    std::thread::sleep(Duration::from_millis(300));
    let before = read_calls(bay0);
    std::thread::sleep(Duration::from_secs(1));
    let calls = read_calls(bay0) - before;
    // Idle, bay0 reads a timer or a signal now and then: a handful a second.
    assert!(
        calls < 1000,
        "bay0 made {calls} read(2) calls in 1 s beside one idle namespace room: its loop spins"
    );
    assert_eq!(b.answer("stop idle"), "ok room idle stopped");
}
