// SPDX-License-Identifier: GPL-3.0-or-later
//! The kernel's per-user counts (inotify instances, queued signals and POSIX timers) are
//! charged at every user namespace level up to the host's, to the namespace's owner: one
//! room taking all it may must leave another room, and the host's root, their own.
//! Needs root, and `make images` done first (see common/mod.rs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Bay0, Console, PROBE};
use std::time::Duration;

fn counts(line: &str) -> (u64, u64) {
    let field = |k: &str| -> u64 {
        line.split(' ')
            .find_map(|f| f.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
    };
    (field("inotify="), field("signals="))
}

#[test]
fn a_room_that_takes_every_per_user_count_leaves_other_rooms_and_the_host_theirs() {
    let (hog, other) = ("ucnt-a", "ucnt-b");
    let b = Bay0::hog_and_other("ucounts", (hog, 128, 64), other);
    let mut a = Console::attach(&b, hog);
    // The hog keeps what it took (it is killed with its room).
    let (out, _) = a.run(
        &format!("{PROBE} ucount-hog hold > /tmp/hog & while ! grep -q UCOUNTS /tmp/hog; do sleep 1; done; cat /tmp/hog"),
        "",
        Duration::from_secs(120),
    );
    let (a_inotify, a_signals) = counts(out.iter().find(|l| l.starts_with("UCOUNTS")).unwrap());
    assert!(a_inotify > 0 && a_signals > 0, "{out:?}");

    let mut o = Console::attach(&b, other);
    let (out, _) = o.run(&format!("{PROBE} ucount-hog"), "", Duration::from_secs(120));
    let (b_inotify, b_signals) = counts(out.iter().find(|l| l.starts_with("UCOUNTS")).unwrap());
    assert!(
        b_inotify > 0 && b_signals > 0,
        "room {other} got no inotify instance or queued signal while {hog} held \
         {a_inotify} and {a_signals}: {out:?}"
    );

    // The host's root (this test) too: an inotify instance and a signal-raising timer.
    // SAFETY: plain integer argument.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(
        fd >= 0,
        "host root: inotify_init1: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `fd` was just opened by us.
    unsafe { libc::close(fd) };
    // SAFETY: a zeroed sigevent asking for SIGRTMIN; `timer` receives the id.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_SIGNAL;
    sev.sigev_signo = libc::SIGRTMIN();
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: both pointers are valid for the call.
    let r = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &raw mut sev, &raw mut timer) };
    assert_eq!(
        r,
        0,
        "host root: timer_create: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the timer was just created by us.
    unsafe { libc::timer_delete(timer) };
}
