// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier's raw system calls in the room (kept apart from the agent's own `sys` so
//! the courier stays in its own modules), each `unsafe` block with its reason: passing a
//! file descriptor over a Unix socket (through anchor-sys's), directory-relative opens
//! that never follow a symbolic link, O_TMPFILE and linking it in without replacing
//! anything, randomness, and the peer of a vsock connection.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(fd)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// anchor-sys's error as an `io::Error` of its errno's kind (EAGAIN stays WouldBlock,
/// EINTR Interrupted), its text (the call and the errno's name) kept.
fn io_error(e: anchor_sys::Error) -> io::Error {
    io::Error::new(io::Error::from_raw_os_error(e.errno).kind(), e)
}

/// Sends `msg` with descriptor `fd` attached (SCM_RIGHTS), all at once: anchor-sys's
/// [`anchor_sys::channel::send_with_fd`] (the one control-message builder of the
/// workspace, its buffer aligned for a cmsghdr). It does not wait: a request goes out
/// on a connection whose buffer is empty, or not at all.
pub fn send_with_fd(sock: &UnixStream, msg: &[u8], fd: RawFd) -> io::Result<()> {
    anchor_sys::channel::send_with_fd(sock.as_raw_fd(), msg, fd).map_err(io_error)
}

/// Receives one message into `buf` (from a Unix socket: a client's, or a namespace
/// room's umbilical; on a vsock umbilical nothing is ever attached); its length and the
/// descriptor attached, if any (more than one, or a truncated control message, is closed
/// and refused): [`anchor_sys::channel::recv_with_fd`], which waits as the socket does
/// (its timeout ends the wait with WouldBlock).
pub fn recv_with_fd(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    anchor_sys::channel::recv_with_fd(sock.as_raw_fd(), buf).map_err(io_error)
}

/// Opens directory `name` (relative to `dir`, or absolute) without following a symbolic
/// link in its last component.
pub fn open_dir(dir: Option<RawFd>, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `name` is NUL-terminated and outlives the call.
    owned(unsafe { libc::openat(dir.unwrap_or(libc::AT_FDCWD), name.as_ptr(), flags) })
}

/// Whether `name` in `dir` is a symbolic link (fstatat, not following it); false when it
/// cannot be read.
pub fn is_symlink_at(dir: RawFd, name: &CStr) -> bool {
    // SAFETY: stat is plain old data; all-zero is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and `st` writable, both valid for the call.
    let ret = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    ret == 0 && st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// mkdirat(2); an existing entry is not an error (it is checked when opened).
pub fn mkdir_at(dir: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<bool> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    match check(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// An unnamed regular file in directory `dir` (O_TMPFILE): it vanishes unless linked in.
pub fn tmpfile(dir: RawFd, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let flags = libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC;
    // SAFETY: "." is a NUL-terminated static string.
    owned(unsafe { libc::openat(dir, c".".as_ptr(), flags, libc::c_uint::from(mode)) })
}

/// Gives the O_TMPFILE `file` the name `name` in `dir`; fails with EEXIST, never
/// replacing, if the name exists (whatever it is, a symbolic link included).
pub fn link_tmpfile(file: RawFd, dir: RawFd, name: &CStr) -> io::Result<()> {
    let path = CString::new(format!("/proc/self/fd/{file}"))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: both paths are NUL-terminated and outlive the call. AT_SYMLINK_FOLLOW
    // resolves the /proc link to the open file itself (open(2), O_TMPFILE).
    check(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            path.as_ptr(),
            dir,
            name.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(drop)
}

/// Removes `name` from `dir` if it is still the file open as `file` (same device and
/// inode, not following a symbolic link): what a link just made is undone with. Fails
/// with ESTALE, removing nothing, when something else stands under that name now.
pub fn unlink_if_same(dir: RawFd, name: &CStr, file: RawFd) -> io::Result<()> {
    // SAFETY: stat is plain old data; all-zero is a valid value to be overwritten.
    let mut ours: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `ours` is a valid, writable stat for the kernel to fill.
    check(unsafe { libc::fstat(file, &mut ours) })?;
    // SAFETY: as above.
    let mut there: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and `there` writable, both valid for the call.
    check(unsafe { libc::fstatat(dir, name.as_ptr(), &mut there, libc::AT_SYMLINK_NOFOLLOW) })?;
    if (ours.st_dev, ours.st_ino) != (there.st_dev, there.st_ino) {
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    // SAFETY: `name` is NUL-terminated and outlives the call.
    check(unsafe { libc::unlinkat(dir, name.as_ptr(), 0) }).map(drop)
}

/// Bytes available to the caller in the file system holding `fd`.
pub fn free_bytes(fd: RawFd) -> io::Result<u64> {
    // SAFETY: statvfs is plain old data; all-zero is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid, writable statvfs for the kernel to fill.
    check(unsafe { libc::fstatvfs(fd, &mut st) })?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Fills `buf` from the kernel's random number generator.
pub fn random(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = buf.get_mut(done..).unwrap_or_default();
        // SAFETY: `rest` is valid for writes of its length.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) => done += n,
            Err(_) if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(io::Error::last_os_error()),
        }
    }
    Ok(())
}

/// The context id of the peer of a connected AF_VSOCK socket.
pub fn vsock_peer_cid(fd: RawFd) -> io::Result<u32> {
    // SAFETY: sockaddr_vm is plain old data; all-zero is valid.
    let mut addr: libc::sockaddr_vm = unsafe { core::mem::zeroed() };
    let mut len = core::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: `addr` and `len` are valid for writing, sized as passed.
    check(unsafe { libc::getpeername(fd, (&raw mut addr).cast(), &mut len) })?;
    Ok(addr.svm_cid)
}

/// SO_RCVTIMEO and SO_SNDTIMEO of socket `fd`: a peer that makes no progress for `secs`
/// fails the read or write.
pub fn set_timeouts(fd: RawFd, secs: u32) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::from(secs),
        tv_usec: 0,
    };
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        let len = core::mem::size_of::<libc::timeval>() as libc::socklen_t;
        // SAFETY: `tv` is a valid timeval of `len` bytes for the duration of the call.
        check(unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const tv).cast(), len) })?;
    }
    Ok(())
}
