// SPDX-License-Identifier: GPL-3.0-or-later
//! How bay0 (root) reaches a room's agent for a courier transfer, without ever being
//! aimed elsewhere by the room (docs/COURIER-PROTOCOL.md, "Transport"):
//!
//! - a microVM room: bay0 connects to the hybrid vsock socket in the room's run
//!   directory. That directory belongs to the room's uid (its jailed VMM writes there),
//!   so a compromised VMM could replace the socket with a symbolic link to another
//!   room's socket or to bay0's own control socket. The connection is therefore only
//!   used when the listener at its other end runs as the room's uid (SO_PEERCRED, read
//!   before a byte is sent): [`connect_room`].
//! - a namespace room: it has no vsock, and bay0 connects to no path at all. bay0 makes
//!   a socket pair and passes one end to the room's agent over the umbilical it already
//!   holds (SCM_RIGHTS on a frame), keeping the other: [`pass_channel`].

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::{check, connect_only, owned, peer_uid, write_hello, Error, Result};

/// The error when the listener at a room's socket is not the room's.
pub const NOT_THE_ROOMS: &str =
    "connect to the room's vsock socket: its listener is not the room's uid (a planted link?)";

/// One side of a courier transfer, as bay0 reaches that room's agent.
#[derive(Debug, Clone, Copy)]
pub enum Side<'a> {
    /// A microVM room: its hybrid vsock socket `path`, whose listener must run as `uid`.
    Vsock { path: &'a Path, uid: u32 },
    /// A namespace room: its agent's umbilical connection (`None`: it has none), over
    /// which one end of a new socket pair is sent.
    Passed { umbilical: Option<RawFd> },
}

impl<'a> Side<'a> {
    /// A microVM room (`vsock`: its socket `path`, its `uid`) or a namespace room (its
    /// agent's `umbilical`).
    pub fn new<U: AsRawFd>(vsock: bool, path: &'a Path, uid: u32, umbilical: Option<&U>) -> Self {
        match vsock {
            true => Side::Vsock { path, uid },
            false => Side::Passed {
                umbilical: umbilical.map(AsRawFd::as_raw_fd),
            },
        }
    }

    /// The connection to this side's agent (close-on-exec): a microVM room's socket,
    /// checked to be the room's and then sent `hello` ([`connect_room`]); or a socket
    /// passed to a namespace room's agent with `frame` ([`pass_channel`]).
    pub fn open(self, hello: &[u8], frame: &[u8]) -> Result<OwnedFd> {
        match self {
            Side::Vsock { path, uid } => connect_room(path, uid, hello),
            Side::Passed { umbilical } => {
                let umbilical = umbilical.ok_or(Error {
                    op: "pass a courier channel: the room's agent has no umbilical",
                    errno: libc::ENOTCONN,
                })?;
                pass_channel(umbilical, frame)
            }
        }
    }
}

/// Connects to the Unix socket at `path` (never waiting: see [`crate::connect_unix`])
/// and, only if the process listening there runs as `uid`, writes `hello`; otherwise the
/// connection is closed unused (not a byte written) and the error is [`NOT_THE_ROOMS`]
/// (EACCES).
pub fn connect_room(path: &Path, uid: u32, hello: &[u8]) -> Result<OwnedFd> {
    let fd = connect_only(path)?;
    if peer_uid(fd.as_raw_fd())? != uid {
        return Err(Error {
            op: NOT_THE_ROOMS,
            errno: libc::EACCES,
        });
    }
    write_hello(&fd, hello)?;
    Ok(fd)
}

/// A connected pair of Unix stream sockets (close-on-exec).
pub fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    // SAFETY: `fds` has room for the two descriptors the kernel writes.
    check("socketpair", unsafe {
        libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr())
    })?;
    let [a, b] = fds;
    // SAFETY: the kernel just created this descriptor; nobody else owns it.
    let a = unsafe { OwnedFd::from_raw_fd(a) };
    // SAFETY: as above.
    let b = unsafe { OwnedFd::from_raw_fd(b) };
    Ok((a, b))
}

/// Sends all of `bytes` on the Unix socket `sock` with descriptor `fd` attached
/// (SCM_RIGHTS), without waiting (MSG_DONTWAIT) and without SIGPIPE: a peer whose buffer
/// is full, or a message that goes out short, is an error.
pub fn send_with_fd(sock: RawFd, bytes: &[u8], fd: RawFd) -> Result<()> {
    const SPACE: usize = 32;
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // u64s: the control buffer is aligned for a cmsghdr.
    let mut control = [0u64; SPACE / 8];
    // SAFETY: msghdr is plain old data; all-zero is valid before the fields are set.
    let mut hdr: libc::msghdr = unsafe { core::mem::zeroed() };
    hdr.msg_iov = &raw mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as _;
    // SAFETY: `hdr` points at `control`, large enough for one header with one int
    // (CMSG_SPACE(4) is 24 on 64-bit Linux, at most SPACE).
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&hdr) };
    if cmsg.is_null() {
        return Err(Error {
            op: "sendmsg: no room for the control message",
            errno: libc::EINVAL,
        });
    }
    // SAFETY: `cmsg` points into `control` (checked non-null), which outlives this
    // function; it is the start of `control`, whose u64s align it for a cmsghdr.
    let header = unsafe { &mut *cmsg };
    header.cmsg_level = libc::SOL_SOCKET;
    header.cmsg_type = libc::SCM_RIGHTS;
    // SAFETY: CMSG_LEN only computes a size.
    header.cmsg_len = unsafe { libc::CMSG_LEN(4) } as _;
    // SAFETY: CMSG_DATA addresses the int after the header, inside `control`.
    let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
    // SAFETY: `data` points at 4 writable bytes inside `control`.
    unsafe { core::ptr::write_unaligned(data, fd) };
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    // SAFETY: `hdr` and everything it points to are valid for the call.
    let n = unsafe { libc::sendmsg(sock, &hdr, flags) };
    let n = crate::check_size("sendmsg with a descriptor", n)?;
    if n != bytes.len() {
        return Err(Error {
            op: "sendmsg with a descriptor: sent short",
            errno: libc::EAGAIN,
        });
    }
    Ok(())
}

/// Receives into `buf` from the Unix socket `sock` (blocking) with at most one
/// descriptor attached; the byte count and the descriptor (close-on-exec). More than one
/// descriptor, or a truncated control message, is an error (what came is closed).
pub fn recv_with_fd(sock: RawFd, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain old data; all-zero is valid before the fields are set.
    let mut hdr: libc::msghdr = unsafe { core::mem::zeroed() };
    hdr.msg_iov = &raw mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = core::mem::size_of_val(&control) as _;
    // SAFETY: `hdr` and the buffers it points to are valid for the call.
    let n = unsafe { libc::recvmsg(sock, &mut hdr, libc::MSG_CMSG_CLOEXEC) };
    let n = crate::check_size("recvmsg", n)?;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `control` up to msg_controllen; the CMSG macros walk it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&hdr) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is a header inside `control`, as returned by the CMSG macros.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN only computes a size.
            let head = unsafe { libc::CMSG_LEN(0) } as usize;
            // SAFETY: CMSG_DATA addresses the data after this header, inside `control`.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
            // No further than `control`'s end, whatever the header says.
            let end = control.as_ptr_range().end as usize;
            let room = end.saturating_sub(data as usize) / 4;
            let count = ((header.cmsg_len as usize).saturating_sub(head) / 4).min(room);
            for i in 0..count {
                // SAFETY: the kernel wrote `count` ints after the header, and each is
                // inside `control` (`room` above).
                let at = unsafe { data.add(i) };
                // SAFETY: `at` points at one of those ints (possibly unaligned).
                let fd = unsafe { core::ptr::read_unaligned(at) };
                fds.push(owned("recvmsg: a received descriptor", fd)?);
            }
        }
        // SAFETY: walks to the next header inside `control` (or null at its end).
        cmsg = unsafe { libc::CMSG_NXTHDR(&hdr, cmsg) };
    }
    if hdr.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > 1 {
        return Err(Error {
            op: "recvmsg: more than one descriptor attached",
            errno: libc::EPROTO,
        });
    }
    Ok((n, fds.pop()))
}

/// Makes a socket pair, sends one end to the peer of `umbilical` with `frame` (see
/// [`send_with_fd`]) and returns the other end: bay0's side of the new channel.
pub fn pass_channel(umbilical: RawFd, frame: &[u8]) -> Result<OwnedFd> {
    let (ours, theirs) = socketpair()?;
    send_with_fd(umbilical, frame, theirs.as_raw_fd())?;
    Ok(ours)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("anchor-sys-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn a_listener_of_the_rooms_uid_gets_the_line() {
        let dir = scratch("room-ok");
        let path = dir.join("vsock");
        let listener = UnixListener::bind(&path).unwrap();
        let fd = connect_room(&path, euid(), b"CONNECT 1025\n").unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let mut line = [0u8; 13];
        peer.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"CONNECT 1025\n");
        drop(fd);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A listener of another uid (another room's, or root's while the room is not root)
    /// is refused before a byte is written; so is a symbolic link the room planted that
    /// points at such a listener (connect(2) follows it; the check does not care).
    #[test]
    fn another_uids_listener_and_a_planted_link_to_one_are_refused() {
        let dir = scratch("room-refused");
        let path = dir.join("other");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let room_uid = euid().wrapping_add(64_001);
        let e = connect_room(&path, room_uid, b"CONNECT 1025\n").unwrap_err();
        assert_eq!((e.op, e.errno), (NOT_THE_ROOMS, libc::EACCES));
        let planted = dir.join("vsock");
        std::os::unix::fs::symlink(&path, &planted).unwrap();
        let e = connect_room(&planted, room_uid, b"CONNECT 1025\n").unwrap_err();
        assert_eq!(e.errno, libc::EACCES);
        assert!(e.to_string().contains("not the room's uid"), "{e}");
        // Both connections reached the listener and were closed without a byte.
        for _ in 0..2 {
            let (mut peer, _) = listener.accept().unwrap();
            peer.set_nonblocking(false).unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Run by [`a_listener_running_as_another_uid_is_refused`] in a child process (this
    /// test binary again, under another uid): listens at `$ANCHOR_SYS_LISTEN_AT`, says so
    /// in `$ANCHOR_SYS_LISTEN_AT.ready`, takes two connections, reads each to its end and
    /// writes what it got in `.got`. Without the variable it does nothing.
    #[test]
    fn listener_helper() {
        let Some(path) = std::env::var_os("ANCHOR_SYS_LISTEN_AT") else {
            return;
        };
        let path = std::path::PathBuf::from(path);
        let l = UnixListener::bind(&path).unwrap();
        std::fs::write(path.with_extension("ready"), b"").unwrap();
        let mut got = Vec::new();
        for c in l.incoming().take(2) {
            c.unwrap().read_to_end(&mut got).unwrap();
            got.push(b'|');
        }
        std::fs::write(path.with_extension("got"), got).unwrap();
    }

    /// A listener that really runs as another uid (this test binary again, as uid 64123;
    /// root only): refused unless that uid is the room's.
    #[test]
    fn a_listener_running_as_another_uid_is_refused() {
        use std::os::unix::process::CommandExt;
        if euid() != 0 {
            eprintln!("not root: a listener under another uid cannot be made; skipped");
            return;
        }
        let dir = scratch("room-uid");
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let path = dir.join("vsock");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "channel::tests::listener_helper",
                "--test-threads=1",
            ])
            .env("ANCHOR_SYS_LISTEN_AT", &path)
            .uid(64123)
            .gid(64123)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while !path.with_extension("ready").exists() {
            assert!(child.try_wait().unwrap().is_none(), "the listener ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let e = connect_room(&path, 64_124, b"x").unwrap_err();
        assert_eq!((e.op, e.errno), (NOT_THE_ROOMS, libc::EACCES));
        drop(connect_room(&path, 64_123, b"hello").unwrap());
        assert!(child.wait().unwrap().success());
        // The refused connection carried nothing; the room's own got its line.
        let got = std::fs::read(path.with_extension("got")).unwrap();
        assert_eq!(got, b"|hello|");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_passed_channel_reaches_the_other_end_and_carries_bytes() {
        let (bay0_umb, agent_umb) = UnixStream::pair().unwrap();
        let path = Path::new("/nonexistent");
        let ours = Side::new(false, path, 0, Some(&bay0_umb))
            .open(b"unused", &[6, 0, 0, 0])
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, fd) = recv_with_fd(agent_umb.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], &[6, 0, 0, 0]);
        let mut theirs = UnixStream::from(fd.unwrap());
        let mut ours = UnixStream::from(ours);
        ours.write_all(b"fetch").unwrap();
        let mut got = [0u8; 5];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"fetch");
        theirs.write_all(b"offer").unwrap();
        ours.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"offer");
        // An ordinary frame after it comes without a descriptor.
        (&bay0_umb).write_all(&[3, 0, 0, 0]).unwrap();
        let (n, fd) = recv_with_fd(agent_umb.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((n, fd.is_none()), (4, true));
        // A room without an umbilical cannot be reached.
        let none = Side::new(false, path, 0, None::<&UnixStream>);
        assert_eq!(
            none.open(b"", &[6, 0, 0, 0]).unwrap_err().errno,
            libc::ENOTCONN
        );
    }

    #[test]
    fn a_full_umbilical_fails_at_once() {
        let (bay0_umb, _agent_umb) = UnixStream::pair().unwrap();
        bay0_umb.set_nonblocking(true).unwrap();
        let filler = [0u8; 65536];
        while (&bay0_umb).write(&filler).is_ok() {}
        let e = pass_channel(bay0_umb.as_raw_fd(), &[6, 0, 0, 0]).unwrap_err();
        assert_eq!(e.errno, libc::EAGAIN);
    }

    /// Sends one byte on `sock` with `fds` in one SCM_RIGHTS message (what a hostile
    /// client of the agent's courier socket can do).
    fn send_fds(sock: RawFd, fds: &[RawFd]) {
        let mut byte = [7u8];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let ints = u32::try_from(4 * fds.len()).unwrap();
        let mut control = vec![0u64; 64];
        // SAFETY: msghdr is plain old data; all-zero is valid.
        let mut hdr: libc::msghdr = unsafe { core::mem::zeroed() };
        hdr.msg_iov = &raw mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size (at most 512 bytes here: 64 u64s).
        hdr.msg_controllen = unsafe { libc::CMSG_SPACE(ints) } as _;
        // SAFETY: CMSG_FIRSTHDR reads `hdr`'s control fields only.
        let first = unsafe { libc::CMSG_FIRSTHDR(&hdr) };
        // SAFETY: `first` is the start of `control`: u64-aligned, room for the header.
        let cmsg = unsafe { &mut *first };
        cmsg.cmsg_level = libc::SOL_SOCKET;
        cmsg.cmsg_type = libc::SCM_RIGHTS;
        // SAFETY: CMSG_LEN only computes a size.
        cmsg.cmsg_len = unsafe { libc::CMSG_LEN(ints) } as _;
        // SAFETY: CMSG_DATA addresses the ints after the header, inside `control`.
        let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
        for (i, fd) in fds.iter().enumerate() {
            // SAFETY: int `i` of the data is inside `control` (CMSG_SPACE above).
            let at = unsafe { data.add(i) };
            // SAFETY: `at` points at 4 writable bytes of `control`.
            unsafe { core::ptr::write_unaligned(at, *fd) };
        }
        // SAFETY: `hdr` and what it points to are valid for the call.
        assert_eq!(unsafe { libc::sendmsg(sock, &hdr, 0) }, 1);
    }

    #[test]
    fn more_than_one_descriptor_is_refused_and_every_one_closed() {
        // 2 fit in the control buffer (refused, closed by us); 40 do not (MSG_CTRUNC:
        // refused; the kernel closes what did not fit, we close the rest).
        for count in [2usize, 40] {
            let (client, agent) = UnixStream::pair().unwrap();
            let (mut r, w) = std::io::pipe().unwrap();
            let many = vec![w.as_raw_fd(); count];
            send_fds(client.as_raw_fd(), &many);
            let mut buf = [0u8; 16];
            let e = recv_with_fd(agent.as_raw_fd(), &mut buf).unwrap_err();
            assert_eq!(e.errno, libc::EPROTO, "{count} descriptors");
            // Every copy of the write end is gone once ours is: the read end sees EOF.
            drop(w);
            let mut rest = Vec::new();
            assert_eq!(r.read_to_end(&mut rest).unwrap(), 0, "{count} descriptors");
        }
    }
}
