// SPDX-License-Identifier: GPL-3.0-or-later
//! The raw system calls of this crate (all its `unsafe` lives here): one netlink message
//! out, one datagram in.

use std::os::fd::{AsRawFd, BorrowedFd};

/// send(2) of one netlink message to the kernel on `fd` (no address: the kernel).
pub fn netlink_send(fd: BorrowedFd<'_>, msg: &[u8]) -> std::io::Result<()> {
    // SAFETY: the pointer and length describe `msg`, valid for reads for the call.
    let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    match usize::try_from(n) {
        Ok(n) if n == msg.len() => Ok(()),
        Ok(_) => Err(std::io::ErrorKind::WriteZero.into()),
        Err(_) => Err(std::io::Error::last_os_error()),
    }
}

/// recv(2) of one netlink datagram on `fd` without waiting (`WouldBlock` when none is
/// queued), again after a signal interrupted it. Returns the datagram's whole length
/// (MSG_TRUNC): more than `buf.len()` means it did not fit and was cut.
pub fn netlink_recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: the pointer and length describe `buf`, valid for writes for the call;
        // the kernel writes at most `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        match usize::try_from(n) {
            Ok(n) => return Ok(n),
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}
