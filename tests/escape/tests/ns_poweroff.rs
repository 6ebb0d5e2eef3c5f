// SPDX-License-Identifier: GPL-3.0-or-later
//! `poweroff` and `halt` typed in a room close it. busybox's applets signal PID 1 as
//! busybox's init reads signals (SIGUSR2, SIGUSR1); the room's PID 1 is the agent, which
//! ignored them: in a namespace room (whose shell is the room's root) both printed nothing
//! and did nothing. The agent now takes them as the shell's exit: the room powers off.
//! SIGTERM (`kill 1`, busybox's `reboot`), SIGINT and SIGHUP still do nothing: a room does
//! not restart itself, and a stray `kill 1` does not close it; `reboot` at the room's
//! login shell (a function of its /etc/profile) says so. The shell the agent starts blocks
//! no signal (the agent blocks the ones it waits for).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ns_policy, Bay0, Console};
use std::io::Write;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn poweroff_and_halt_in_a_room_close_it_and_kill_1_does_not() {
    let b = Bay0::start("poweroff", &[("off", ns_policy("off", 256, 64))]);
    for (n, typed, said) in [(1, "poweroff", "poweroff"), (2, "busybox halt", "halt")] {
        let ok = b.answer("start off");
        assert!(ok.starts_with("ok room off ready"), "{ok}");
        let mut c = Console::attach(&b, "off");
        let (lines, status) = c.run("grep SigBlk /proc/$$/status", "", WAIT);
        assert_eq!(status, 0, "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.split_whitespace().eq(["SigBlk:", "0000000000000000"])),
            "the room's shell blocks signals: {lines:?}"
        );
        let (lines, status) = c.run("kill -TERM 1; kill -INT 1; kill -HUP 1", "", WAIT);
        assert_eq!(status, 0, "{lines:?}");
        std::thread::sleep(Duration::from_millis(300));
        // `reboot` (the room's profile's function: busybox's would signal SIGTERM) says
        // what closes or renews a room instead of doing nothing.
        let (lines, status) = c.run("reboot", "", WAIT);
        assert_eq!(status, 1, "{lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with(
                "reboot: a room does not restart itself: exit closes it; on the anchor host, \
                 anchorctl room reset off opens it again, fresh"
            )),
            "{lines:?}"
        );
        let (lines, status) = c.run("echo still-here", "", WAIT);
        assert_eq!((lines, status), (vec!["still-here".to_string()], 0));
        assert!(b.record("off").contains(" state=running"), "{}", b.log());

        c.stream.write_all(format!("{typed}\r").as_bytes()).unwrap();
        // Not from the start of a line: the shell's next prompt may come first.
        c.wait_for(&format!("anchor-agent: {said} asked in the room"), WAIT);
        // bay0's line for this end (the n-th end of the room).
        let end = Instant::now() + WAIT;
        let line = loop {
            let log = b.log();
            let ended: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("bay0: room off (pid "))
                .collect();
            if let Some(l) = ended.get(n - 1) {
                break l.to_string();
            }
            assert!(Instant::now() < end, "room off did not end: {log}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            line.ends_with("exited with status 0: the room powered off"),
            "{line}"
        );
        let list = b.ask("list");
        assert!(
            list.iter().any(|l| l == "room name=off state=stopped"),
            "{list:?}"
        );
    }
    let ends = b.audit_records(" event=room.stop room=off ");
    assert_eq!(ends.len(), 2, "{ends:?}");
    for end in ends {
        // A room that powered off has no why (not the jail's last setup line).
        assert!(
            end.contains(" how=the%20room%20powered%20off status=exited%20with%20status%200 why= "),
            "{end}"
        );
    }
}
