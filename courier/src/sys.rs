// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier's raw system calls, each `unsafe` block with its reason: taking the two
//! inherited connections, making them blocking with send/receive timeouts.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};

/// Takes ownership of inherited descriptor `fd` (0: the source, 1: the destination).
pub fn inherited(fd: RawFd) -> io::Result<File> {
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: bay0 handed us `fd` as a connection of ours; nothing else in this process
    // owns it (std never uses fds 0 and 1 as Files itself).
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Clears O_NONBLOCK (bay0 connects without blocking) and sets SO_RCVTIMEO and
/// SO_SNDTIMEO to `secs`: a peer that stalls for that long fails the transfer.
pub fn blocking_with_timeouts(fd: RawFd, secs: u32) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL only read and set this descriptor's status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let tv = libc::timeval {
        tv_sec: libc::time_t::from(secs),
        tv_usec: 0,
    };
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        let len = core::mem::size_of::<libc::timeval>() as libc::socklen_t;
        // SAFETY: `tv` is a valid timeval of `len` bytes for the duration of the call.
        let ret =
            unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const tv).cast(), len) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Closes every descriptor above stderr: the courier holds its two connections and its
/// result pipe and nothing it may have inherited by mistake.
pub fn close_others() -> io::Result<()> {
    // SAFETY: close_range(2) only closes descriptors of this process; none above 2 is
    // in use by this program at this point (it runs first thing in main).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
