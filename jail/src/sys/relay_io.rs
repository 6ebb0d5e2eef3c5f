// SPDX-License-Identifier: GPL-3.0-or-later
//! The system calls of a namespace room's network relay (`crate::relay`): reads and
//! writes that never wait, and the one wait for either of its descriptors. Errors are
//! errnos (the relay ends with the reason); EAGAIN and EINTR mean "nothing now".

use std::os::fd::{AsRawFd, OwnedFd};

use super::errno;

/// ppoll(2) on `fds`, no timeout: `Ok(false)` when a signal interrupted it (EINTR).
pub fn wait(fds: &mut [libc::pollfd]) -> core::result::Result<bool, i32> {
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a slice of valid pollfds, writable for the call, and `n` its
    // length; no timeout, no signal mask change.
    let ret = unsafe { libc::ppoll(fds.as_mut_ptr(), n, core::ptr::null(), core::ptr::null()) };
    if ret >= 0 {
        return Ok(true);
    }
    match errno() {
        libc::EINTR => Ok(false),
        e => Err(e),
    }
}

/// read(2) into `buf`: `Ok(None)` when nothing is there now (EAGAIN, EINTR).
pub fn read_now(fd: &OwnedFd, buf: &mut [u8]) -> core::result::Result<Option<usize>, i32> {
    // SAFETY: the pointer and length describe `buf`, valid for writes for the call.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    match usize::try_from(n) {
        Ok(n) => Ok(Some(n)),
        Err(_) => match errno() {
            libc::EAGAIN | libc::EINTR => Ok(None),
            e => Err(e),
        },
    }
}

/// send(2) of what passt may take now, without SIGPIPE: the bytes taken (0: none now).
pub fn send_now(fd: &OwnedFd, bytes: &[u8]) -> core::result::Result<usize, i32> {
    if bytes.is_empty() {
        return Ok(0);
    }
    // SAFETY: the pointer and length describe `bytes`, valid for reads for the call.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    match usize::try_from(n) {
        Ok(n) => Ok(n),
        Err(_) => match errno() {
            libc::EAGAIN | libc::EINTR => Ok(0),
            e => Err(e),
        },
    }
}

/// One frame to eth0; the room's kernel takes it or drops it (a full socket queue), as a
/// NIC's receive path would: nothing to retry.
pub fn write_frame(tap: &OwnedFd, frame: &[u8]) {
    // SAFETY: the pointer and length describe `frame`, valid for reads for the call.
    let _ = unsafe { libc::write(tap.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
}
