// SPDX-License-Identifier: GPL-3.0-or-later
//! Every raw system call the agent makes, each `unsafe` block with its reason.
//! Callers get safe functions returning [`Error::Sys`] with the errno.

use crate::error::{Error, Result};
use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The calling thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(op: &'static str, ret: libc::c_int) -> Result<libc::c_int> {
    if ret < 0 {
        Err(Error::Sys { op, errno: errno() })
    } else {
        Ok(ret)
    }
}

fn owned(op: &'static str, fd: libc::c_int) -> Result<OwnedFd> {
    let fd = check(op, fd)?;
    // SAFETY: `fd` was just returned by the kernel, is valid and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mount(2) with a filesystem type and optional data string.
pub fn mount(
    op: &'static str,
    source: &CStr,
    target: &CStr,
    fstype: &CStr,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<()> {
    let data_ptr = data
        .map_or(core::ptr::null(), CStr::as_ptr)
        .cast::<libc::c_void>();
    // SAFETY: all pointers are NUL-terminated strings (or NULL for data) that outlive
    // the call.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data_ptr,
        )
    };
    check(op, ret).map(drop)
}

/// sethostname(2).
pub fn sethostname(name: &str) -> Result<()> {
    // SAFETY: the pointer/length pair describes `name`'s bytes, valid for the call.
    let ret = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    check("sethostname", ret).map(drop)
}

/// write(2) once; how many bytes the kernel took.
pub fn write(fd: RawFd, buf: &[u8]) -> Result<usize> {
    // SAFETY: the pointer/length pair describes `buf`, valid for the call.
    let ret = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    usize::try_from(ret).map_err(|_| Error::Sys {
        op: "write",
        errno: errno(),
    })
}

/// True if `fd` is an open file descriptor.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Makes the open file `f` the process's descriptors 0, 1 and 2, kept across exec,
/// whichever number `f` has itself: when it is one of the three (the lowest free number,
/// when the kernel opened no console for init), that one is kept and made inheritable,
/// not closed with `f`. The first error, if any, after trying all three.
pub fn make_stdio(f: OwnedFd) -> Result<()> {
    let raw = std::os::fd::IntoRawFd::into_raw_fd(f);
    let mut result = Ok(());
    for fd in 0..=2 {
        let r = if fd == raw {
            // SAFETY: F_SETFD only clears this descriptor's close-on-exec flag.
            check("keep the console open across exec", unsafe {
                libc::fcntl(fd, libc::F_SETFD, 0)
            })
            .map(drop)
        } else {
            dup2("dup2(console)", raw, fd)
        };
        result = result.and(r);
    }
    if raw > 2 {
        // SAFETY: `raw` came from `f` above, is ours alone and is closed once, here.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    result
}

/// dup2(2).
pub fn dup2(op: &'static str, from: RawFd, to: RawFd) -> Result<()> {
    // SAFETY: dup2 only manipulates the descriptor table.
    check(op, unsafe { libc::dup2(from, to) }).map(drop)
}

/// A connected AF_VSOCK stream socket to `cid`:`port`.
pub fn vsock_connect(cid: u32, port: u32) -> Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked and owned by `owned`.
    let fd = owned("socket(AF_VSOCK)", unsafe {
        libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { core::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_port = port;
    addr.svm_cid = cid;
    let len = core::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: `addr` is a valid sockaddr_vm of `len` bytes for the duration of the call.
    let ret = unsafe { libc::connect(raw, (&raw const addr).cast::<libc::sockaddr>(), len) };
    check("connect(vsock)", ret)?;
    Ok(fd)
}

/// Result of one waitpid(2) call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    /// A child ended: its pid and raw wait status.
    Child(libc::pid_t, libc::c_int),
    /// WNOHANG and no child has ended yet.
    NoneYet,
    /// No children at all (ECHILD).
    NoChildren,
}

/// waitpid(-1, ..): reap any child; `block` waits for one.
pub fn reap(block: bool) -> Result<Reaped> {
    let mut status: libc::c_int = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: `status` is a valid out-pointer for the duration of the call.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if pid > 0 {
            return Ok(Reaped::Child(pid, status));
        }
        if pid == 0 {
            return Ok(Reaped::NoneYet);
        }
        match errno() {
            libc::EINTR => continue,
            libc::ECHILD => return Ok(Reaped::NoChildren),
            e => {
                return Err(Error::Sys {
                    op: "waitpid",
                    errno: e,
                })
            }
        }
    }
}

/// What PID 1 waits for besides its children: busybox's `poweroff` (SIGUSR2) and `halt`
/// (SIGUSR1), which signal PID 1 as busybox's init reads them. (Not SIGTERM, busybox's
/// `reboot`: `kill 1` says it too, and a room does not restart itself.)
pub const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGUSR2, libc::SIGUSR1];

/// The set [`wait_signal`] takes: SIGCHLD and [`STOP_SIGNALS`].
fn waited_set() -> Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for both calls; the signals are valid numbers.
    check("sigemptyset", unsafe { libc::sigemptyset(&mut set) })?;
    for sig in [libc::SIGCHLD].iter().chain(STOP_SIGNALS.iter()) {
        // SAFETY: as above.
        check("sigaddset", unsafe { libc::sigaddset(&mut set, *sig) })?;
    }
    Ok(set)
}

/// Blocks SIGCHLD and [`STOP_SIGNALS`] in this thread and in every thread it starts from
/// now on, so that they stay pending for [`wait_signal`] (children get an empty mask: the
/// standard library's spawn resets it).
pub fn block_signals() -> Result<()> {
    let set = waited_set()?;
    // SAFETY: `set` is a valid sigset_t; the old mask is not asked for (null).
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(Error::Sys {
            op: "pthread_sigmask",
            errno: ret,
        });
    }
    Ok(())
}

/// Waits for SIGCHLD or one of [`STOP_SIGNALS`] (blocked by [`block_signals`]); its number.
pub fn wait_signal() -> Result<libc::c_int> {
    let set = waited_set()?;
    loop {
        // SAFETY: `set` is a valid sigset_t; the siginfo is not asked for (null).
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        if sig > 0 {
            return Ok(sig);
        }
        if errno() != libc::EINTR {
            return check("sigwaitinfo", sig);
        }
    }
}

/// kill(-1, sig): signal every process except PID 1.
pub fn kill_all(sig: libc::c_int) {
    // SAFETY: kill has no memory arguments; failure (ESRCH: nobody left) is fine.
    unsafe { libc::kill(-1, sig) };
}

/// sync(2), then syncfs(2) of the vault volume where one is mounted (/persist): a
/// namespace room's seccomp filter refuses sync, which would write back every file system
/// of the machine, so there the room's one disk is flushed by itself.
pub fn sync() {
    // SAFETY: sync has no arguments.
    unsafe { libc::sync() };
    if let Ok(dir) = std::fs::File::open(crate::volume::MOUNT_POINT) {
        // SAFETY: syncfs takes a descriptor, held open by `dir` for the call.
        unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
    }
}

/// reboot(2) with `cmd` (RB_AUTOBOOT or RB_POWER_OFF). Returns only on failure.
pub fn reboot(cmd: libc::c_int) -> Error {
    // SAFETY: reboot has no memory arguments.
    unsafe { libc::reboot(cmd) };
    Error::Sys {
        op: "reboot",
        errno: errno(),
    }
}

/// getpid(2).
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid has no arguments and cannot fail.
    unsafe { libc::getpid() }
}

/// A listening AF_VSOCK stream socket on `port`, any CID.
pub fn vsock_listen(port: u32) -> Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked and owned by `owned`.
    let fd = owned("socket(AF_VSOCK)", unsafe {
        libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { core::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_port = port;
    addr.svm_cid = libc::VMADDR_CID_ANY;
    let len = core::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: `addr` is a valid sockaddr_vm of `len` bytes for the duration of the call.
    let ret = unsafe { libc::bind(raw, (&raw const addr).cast::<libc::sockaddr>(), len) };
    check("bind(vsock)", ret)?;
    // SAFETY: listen has no memory arguments.
    check("listen(vsock)", unsafe { libc::listen(raw, 16) })?;
    Ok(fd)
}

/// accept4(2) on a listening socket.
pub fn accept(listener: RawFd) -> Result<OwnedFd> {
    loop {
        // SAFETY: NULL address pointers are allowed; the result is checked.
        let fd = unsafe {
            libc::accept4(
                listener,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 && errno() == libc::EINTR {
            continue;
        }
        return owned("accept(vsock)", fd);
    }
}

/// prctl(PR_SET_DUMPABLE): whether processes of the same uid may trace or read us.
pub fn set_dumpable(dumpable: bool) -> Result<()> {
    // SAFETY: prctl with integer arguments only changes this process's flag.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            libc::c_ulong::from(dumpable),
            0,
            0,
            0,
        )
    };
    check("set dumpable", ret).map(drop)
}

/// dup(2) with close-on-exec.
pub fn dup_cloexec(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only adds a descriptor to this process's table.
    owned("dup the console", unsafe {
        libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3)
    })
}

/// Gives the terminal `fd` what a console has by default (the kernel's own settings for a
/// new tty): line editing, echo, signals from ^C ^Z ^\, CR -> NL in, NL -> CRNL out.
pub fn console_line_discipline(fd: RawFd) -> Result<()> {
    let mut t = core::mem::MaybeUninit::<libc::termios>::zeroed();
    // SAFETY: `t` is a valid, writable termios buffer for the call.
    check("read the console's mode", unsafe {
        libc::tcgetattr(fd, t.as_mut_ptr())
    })?;
    // SAFETY: tcgetattr succeeded and filled the buffer.
    let mut t = unsafe { t.assume_init() };
    t.c_iflag = libc::ICRNL | libc::IXON | libc::IUTF8;
    t.c_oflag = libc::OPOST | libc::ONLCR;
    t.c_cflag = (t.c_cflag & (libc::CBAUD | libc::CBAUDEX)) | libc::CS8 | libc::CREAD | libc::HUPCL;
    t.c_lflag = libc::ISIG
        | libc::ICANON
        | libc::ECHO
        | libc::ECHOE
        | libc::ECHOK
        | libc::ECHOCTL
        | libc::ECHOKE
        | libc::IEXTEN;
    for (i, c) in [
        (libc::VINTR, 0x03),
        (libc::VQUIT, 0x1c),
        (libc::VERASE, 0x7f),
        (libc::VKILL, 0x15),
        (libc::VEOF, 0x04),
        (libc::VTIME, 0),
        (libc::VMIN, 1),
        (libc::VSTART, 0x11),
        (libc::VSTOP, 0x13),
        (libc::VSUSP, 0x1a),
        (libc::VREPRINT, 0x12),
        (libc::VWERASE, 0x17),
        (libc::VLNEXT, 0x16),
    ] {
        if let Some(slot) = t.c_cc.get_mut(i) {
            *slot = c;
        }
    }
    // SAFETY: `t` is a valid termios for the call.
    check("set the console's mode", unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, &t)
    })
    .map(drop)
}

/// EXT4_IOC_RESIZE_FS (`_IOW('f', 16, __u64)`): grows the ext filesystem mounted at `dir`
/// online to `blocks` of its blocks. The ext4 driver does it in journaled steps, each
/// leaving a consistent filesystem: cut short, it is smaller, and growing it again goes on.
pub fn ext4_grow(dir: &CStr, blocks: u64) -> Result<()> {
    const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is NUL-terminated and outlives the call.
    let fd = owned("open the mount point", unsafe {
        libc::open(dir.as_ptr(), flags)
    })?;
    // SAFETY: `fd` is open; the argument points to a u64 that outlives the call and the
    // kernel only reads it.
    let ret = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            EXT4_IOC_RESIZE_FS,
            &blocks,
        )
    };
    check("EXT4_IOC_RESIZE_FS", ret).map(drop)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// In a child with fds 0, 1 and 2 closed, a file opened close-on-exec (so as fd 0)
    /// becomes all three, each open and inheritable, and still the same file.
    #[test]
    fn make_stdio_keeps_the_file_when_it_is_fd_0() {
        // SAFETY: the child only makes system calls (no allocation, no lock) and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = (|| {
                for fd in 0..=2 {
                    // SAFETY: the child's own descriptors; nothing else uses them.
                    unsafe { libc::close(fd) };
                }
                let flags = libc::O_RDWR | libc::O_CLOEXEC;
                // SAFETY: a NUL-terminated static path.
                let raw = unsafe { libc::open(c"/dev/null".as_ptr(), flags) };
                if raw != 0 {
                    return false;
                }
                // SAFETY: `raw` was just opened and is owned by nothing else.
                let f = unsafe { OwnedFd::from_raw_fd(raw) };
                if make_stdio(f).is_err() {
                    return false;
                }
                (0..=2).all(|fd| {
                    // SAFETY: stat is plain old data; F_GETFD only reads the table.
                    let mut st: libc::stat = unsafe { core::mem::zeroed() };
                    // SAFETY: `st` is writable for fstat.
                    let stat_ok = unsafe { libc::fstat(fd, &mut st) } == 0;
                    // SAFETY: F_GETFD only reads the descriptor's flags.
                    let inherited = unsafe { libc::fcntl(fd, libc::F_GETFD) } == 0;
                    stat_ok && inherited && st.st_mode & libc::S_IFMT == libc::S_IFCHR
                })
            })();
            // SAFETY: the forked child ends here without running the parent's exit code.
            unsafe { libc::_exit(i32::from(!ok)) };
        }
        let mut status = 0;
        // SAFETY: `status` is writable; `pid` is our child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(status, 0, "fds 0..2 after make_stdio: not the console file");
    }
}
