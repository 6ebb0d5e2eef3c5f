// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier's seccomp filter, installed for real in a forked child: an allowed call
//! works, a forbidden one (openat: the courier never opens anything) kills it with SIGSYS.
#![allow(clippy::unwrap_used, clippy::panic)]

/// In a forked child: install the filter, make an allowed call (write) and a
/// forbidden one (openat): the child must die of SIGSYS after the write.
#[test]
fn a_forbidden_syscall_kills_the_courier() {
    let prog = anchor_courier::confine::program().unwrap();
    let (mut r, w) = std::io::pipe().unwrap();
    use std::os::fd::AsRawFd;
    let wfd = w.as_raw_fd();
    // SAFETY: the child only makes raw system calls (prctl via apply_filter builds no
    // heap state: `prog` exists already) and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        if seccompiler::apply_filter(&prog).is_err() {
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(3) };
        }
        // SAFETY: one byte from a static buffer to our pipe.
        unsafe { libc::write(wfd, b"x".as_ptr().cast(), 1) };
        // SAFETY: a path that outlives the call; the filter must kill us here.
        unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c"/".as_ptr(), 0) };
        // SAFETY: ends the forked child (only if the filter failed to).
        unsafe { libc::_exit(0) };
    }
    drop(w);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let mut got = String::new();
    std::io::Read::read_to_string(&mut r, &mut got).unwrap();
    assert_eq!(got, "x", "the allowed write did not happen");
    assert!(libc::WIFSIGNALED(status), "status {status:#x}");
    assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
}
