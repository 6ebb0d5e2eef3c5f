// SPDX-License-Identifier: GPL-3.0-or-later
//! The host's table of open files (fs.file-max) is one count for the whole kernel: a room
//! that opens every file its memory and process limits allow must leave another room,
//! and the host's unprivileged processes, able to open theirs. Needs root, and
//! `make images` done first (see common/mod.rs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Bay0, Console, PROBE};
use std::time::Duration;

/// Opens /dev/null as uid and gid 65534 (a host process without privileges) in a child;
/// Ok, or the errno.
fn unprivileged_open() -> Result<(), i32> {
    // SAFETY: the test's child only makes raw system calls, then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: plain id changes of the child (a copy of the test's process).
        let dropped = unsafe { libc::setresgid(65534, 65534, 65534) == 0 }
            // SAFETY: as above.
            && unsafe { libc::setresuid(65534, 65534, 65534) } == 0;
        let code = if dropped {
            // SAFETY: a valid NUL-terminated path; the child ends right after.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(99);
            if fd >= 0 {
                0
            } else {
                e.min(99)
            }
        } else {
            100
        };
        // SAFETY: ends the child without running the test's exit handlers.
        unsafe { libc::_exit(code) }
    }
    let mut status = 0;
    // SAFETY: reaps our own child into a valid int.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
    assert!(libc::WIFEXITED(status), "the child died: {status}");
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        100 => panic!("the child could not become uid 65534"),
        e => Err(e),
    }
}

#[test]
fn a_room_that_opens_every_file_it_may_leaves_other_rooms_and_the_host_theirs() {
    // Half of 1536 MiB at 256 bytes a file is more than this machine's fs.file-max
    // (about a tenth of RAM in KiB) once RAM is under 30 GiB; 1024 processes of 4000
    // descriptors each are more again.
    let (hog, other) = ("files-a", "files-b");
    let b = Bay0::hog_and_other("files", (hog, 1536, 1024), other);
    let mut a = Console::attach(&b, hog);
    // The probe's holder processes keep their files after it ends (until the room does).
    let (out, _) = a.run(
        &format!("{PROBE} file-table 1536 hold"),
        "",
        Duration::from_secs(300),
    );
    let verdict = out
        .iter()
        .find(|l| l.contains("file-table:"))
        .unwrap_or_else(|| panic!("no verdict: {out:?}"))
        .clone();

    // While the hog holds every file it got: the other room opens and runs a program,
    // and an unprivileged host process opens a file.
    let mut o = Console::attach(&b, other);
    let (out, status) = o.run(
        "head -c 0 /bin/sh && echo opened",
        "",
        Duration::from_secs(60),
    );
    let host = unprivileged_open();
    let other_opened = status == 0 && out.iter().any(|l| l == "opened");
    assert!(
        verdict.starts_with("BLOCKED file-table:") && other_opened && host.is_ok(),
        "room {hog}: {verdict}\nroom {other} opening /bin/sh: status {status}, {out:?}\n\
         an unprivileged host process opening /dev/null: {host:?} (Err: errno)"
    );
}
