// SPDX-License-Identifier: GPL-3.0-or-later
//! The raw system calls of the virtio devices (all `unsafe` of this module tree lives here).

/// Fill `buf` from the kernel's random pool (getrandom(2) with GRND_NONBLOCK: `WouldBlock`
/// instead of waiting while the pool is not initialised). Returns the number of bytes filled.
pub fn getrandom_nonblocking(buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, a valid writable slice that outlives
    // the call; getrandom writes at most `buf.len()` bytes into it.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// Fill `buf` from the kernel's random pool, waiting (getrandom(2) with no flags) while the
/// pool is not initialised. Waiting is what makes Linux (5.18 and later) seed an unseeded
/// pool itself, from CPU timing jitter; nothing else is guaranteed to seed it on a quiet
/// host. Setup only: never call this from the event loop.
pub fn getrandom_blocking(buf: &mut [u8]) -> std::io::Result<usize> {
    retry_interrupted(|| {
        // SAFETY: as in `getrandom_nonblocking`: `buf` is a valid writable slice that
        // outlives the call and getrandom writes at most `buf.len()` bytes into it.
        unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) }
    })
}

/// Runs the system call `call` (a byte count, or -1 with errno) again while it is
/// interrupted by a signal (EINTR); its count, or its error.
fn retry_interrupted(mut call: impl FnMut() -> isize) -> std::io::Result<usize> {
    loop {
        match usize::try_from(call()) {
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

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Connect a non-blocking Unix stream socket to `path`. Unlike std's blocking connect this
/// never waits: a listener with a full backlog yields `WouldBlock` at once.
pub fn connect_unix_nonblocking(path: &Path) -> std::io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    let mut addr = libc::sockaddr_un {
        sun_family: libc::AF_UNIX as libc::sa_family_t,
        sun_path: [0; 108],
    };
    if bytes.len() >= addr.sun_path.len() {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2) call with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is valid and owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>()
        .saturating_add(bytes.len())
        .saturating_add(1);
    let len = libc::socklen_t::try_from(len).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: `addr` is a fully initialised sockaddr_un that outlives the call and `len`
    // does not exceed its size; `fd` is a valid socket.
    let r = unsafe { libc::connect(fd, std::ptr::from_ref(&addr).cast::<libc::sockaddr>(), len) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(UnixStream::from(owned))
}

fn socket_option(fd: std::os::fd::RawFd, name: libc::c_int) -> std::io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: `v` and `len` are valid for writes and outlive the call; `len` is the size of
    // `v`, so the kernel writes at most that much. A bad fd is reported as an error.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            std::ptr::from_mut(&mut v).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v)
}

/// Take ownership of the inherited descriptor `fd`, which must be an open, connected
/// Unix stream socket; it is made close-on-exec and non-blocking.
///
/// # Safety
/// Nothing else in the process owns `fd` (call it before the process opens any file).
pub unsafe fn adopt_unix_stream(fd: std::os::fd::RawFd) -> std::io::Result<UnixStream> {
    let what = "not a Unix stream socket";
    // SAFETY: the caller's contract, passed on.
    let s = UnixStream::from(unsafe {
        adopt_socket(fd, libc::AF_UNIX, (libc::SO_TYPE, libc::SOCK_STREAM), what)
    }?);
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Take ownership of the inherited descriptor `fd` if it is an open socket of `domain`
/// whose socket option `kind.0` is `kind.1` (else InvalidInput, saying `what`); it is made
/// close-on-exec.
///
/// # Safety
/// Nothing else in the process owns `fd`.
unsafe fn adopt_socket(
    fd: std::os::fd::RawFd,
    domain: libc::c_int,
    kind: (libc::c_int, libc::c_int),
    what: &'static str,
) -> std::io::Result<OwnedFd> {
    // SAFETY: F_GETFD reads the descriptor flags only; a closed fd gives EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let wrong = || std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    if socket_option(fd, libc::SO_DOMAIN).map_err(|_| wrong())? != domain
        || socket_option(fd, kind.0)? != kind.1
    {
        return Err(wrong());
    }
    // SAFETY: F_SETFD on an open descriptor, no pointers.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above) and owned by nobody else in this process (the
    // caller's contract): the returned descriptor becomes its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Take ownership of the inherited descriptor `fd`, which must be an open NETLINK_ROUTE
/// socket (made by the jail in the anchor host's network namespace: its address
/// notifications, and route dumps, are that namespace's); it is made close-on-exec.
///
/// # Safety
/// Nothing else in the process owns `fd`.
pub unsafe fn adopt_netlink_route(fd: std::os::fd::RawFd) -> std::io::Result<OwnedFd> {
    let what = "not a NETLINK_ROUTE socket";
    let kind = (libc::SO_PROTOCOL, libc::NETLINK_ROUTE);
    // SAFETY: the caller's contract, passed on.
    unsafe { adopt_socket(fd, libc::AF_NETLINK, kind, what) }
}

/// Open `path` (created with mode 0600 if missing) and take an exclusive `flock` on it
/// without waiting: `WouldBlock` when another process holds it. The lock lives as long as
/// the returned file (and dies with the process).
pub fn lock_exclusive(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    flock_nb(&f, libc::LOCK_EX)?;
    Ok(f)
}

/// `flock(op | LOCK_NB)` on `f`: `WouldBlock` when another open file description holds a
/// conflicting lock.
pub fn flock_nb(f: &std::fs::File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a valid fd we own; no pointers involved.
        if unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Bind a Unix stream listener at `path` with the umask set to 0177 for the bind, so the
/// socket file is created with mode 0600 whatever the process umask is (fixing the mode
/// after bind would leave a window in which others could connect). The umask is
/// process-wide: this runs during setup, when no other thread creates files.
pub fn bind_private(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    // SAFETY: umask has no memory effects; it cannot fail.
    let old = unsafe { libc::umask(0o177) };
    let r = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above; restores the caller's umask.
    unsafe { libc::umask(old) };
    r
}

/// Most iovecs per preadv/pwritev call here.
const MAX_IOV: usize = 64;

type Slices<'a> = [vm_memory::volatile_memory::VolatileSlice<'a, ()>];

fn iovecs(bufs: &Slices<'_>, out: &mut [libc::iovec; MAX_IOV]) -> usize {
    let mut n = 0;
    for (slot, b) in out.iter_mut().zip(bufs) {
        *slot = libc::iovec {
            iov_base: b.ptr_guard_mut().as_ptr().cast(),
            iov_len: b.len(),
        };
        n += 1;
    }
    n
}

/// preadv(2) from `file` at `offset` straight into guest memory (`bufs`, at most 64 of
/// them are used). Returns the bytes read.
pub fn preadv(file: &std::fs::File, bufs: &Slices<'_>, offset: u64) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = [empty; MAX_IOV];
    let n = iovecs(bufs, &mut iov);
    let off = libc::off_t::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let cnt = libc::c_int::try_from(n).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: the first `n` iovecs describe live guest-memory mappings (VolatileSlices
    // borrowed from the guest memory, which outlives the call) of exactly their lengths;
    // the kernel writes at most that much into each. Guest memory is shared with the guest
    // anyway: concurrent guest access can only garble the guest's own data.
    let r = unsafe { libc::preadv(file.as_raw_fd(), iov.as_ptr(), cnt, off) };
    usize::try_from(r).map_err(|_| std::io::Error::last_os_error())
}

/// pwritev(2) to `file` at `offset` straight from guest memory (`bufs`, at most 64 of them
/// are used). Returns the bytes written.
pub fn pwritev(file: &std::fs::File, bufs: &Slices<'_>, offset: u64) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = [empty; MAX_IOV];
    let n = iovecs(bufs, &mut iov);
    let off = libc::off_t::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let cnt = libc::c_int::try_from(n).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: the first `n` iovecs describe live guest-memory mappings of exactly their
    // lengths (see `preadv`); the kernel only reads from them.
    let r = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), cnt, off) };
    usize::try_from(r).map_err(|_| std::io::Error::last_os_error())
}
