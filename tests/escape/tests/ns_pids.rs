// SPDX-License-Identifier: GPL-3.0-or-later
//! The host's process ids (kernel.pid_max) are one space for the whole machine, which
//! every task of every room also takes from: a room that starts every task its limits
//! allow must leave the host, and another room, able to fork. Needs root, and
//! `make images` done first (see common/mod.rs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Bay0, Console, PROBE};
use std::io::Write;
use std::time::Duration;

#[test]
fn a_room_that_starts_every_task_it_may_leaves_other_rooms_and_the_host_able_to_fork() {
    // A policy may give a room up to 65536 tasks; this machine's pid_max is 32768 (the
    // kernel's default below 32 CPUs). 40000 threads of 64 KiB stacks fit in 4 GiB.
    let (hog, other) = ("pids-a", "pids-b");
    let b = Bay0::hog_and_other("pids", (hog, 4096, 40_000), other);
    // Both consoles first: attaching runs a program in the room.
    let mut a = Console::attach(&b, hog);
    let mut o = Console::attach(&b, other);
    // The probe holds its threads after its verdict until it reads a line.
    a.stream
        .write_all(format!("{PROBE} pid-space hold\r").as_bytes())
        .unwrap();
    a.wait_for("pid-space hold", Duration::from_secs(20));
    let before = a.wait_for("pid-space: ", Duration::from_secs(120));
    let rest = a.wait_for("\n", Duration::from_secs(20));
    let verdict = format!(
        "{}{}",
        before.rsplit('\n').next().unwrap_or_default(),
        rest.trim_end()
    );

    // Meanwhile: the host forks, and the other room runs a program.
    let host = std::process::Command::new("/bin/true").status();
    // (Typed, not `run`: a shell that cannot fork gives up on the rest of its line.)
    o.stream
        .write_all(b"head -c 0 /bin/sh && echo ran\r")
        .unwrap();
    o.wait_for("echo ran", Duration::from_secs(20));
    let out = o.wait_for(&format!("{other}:~# "), Duration::from_secs(60));
    // Release the threads.
    a.stream.write_all(b"\r").unwrap();
    a.wait_for(&format!("{hog}:~# "), Duration::from_secs(60));

    let other_ran = out.lines().any(|l| l.trim_end() == format!("{other}| ran"));
    let host_forked = host.as_ref().is_ok_and(std::process::ExitStatus::success);
    assert!(
        verdict.contains("BLOCKED pid-space:") && other_ran && host_forked,
        "room {hog}: {verdict}\nroom {other} running head: {out:?}\n\
         the host forking /bin/true: {host:?}"
    );
}
