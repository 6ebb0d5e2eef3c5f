// SPDX-License-Identifier: GPL-3.0-or-later
//! The raw system calls of Anchor OS's host-side programs (bay0 and its helpers), each
//! `unsafe` block with its reason (the in-room agent uses its [`spawn`] too). Callers get
//! safe functions that return a [`Error`]: what was being done and the errno, `Copy` and
//! allocation-free (bay0's error-path rule).

pub mod audit;

pub use libc;

pub mod cgroup;
pub mod channel;
mod spawn;

pub use spawn::{spawn, spawn_confined, Confine, Spawn, NAMESPACE_FLAGS};

pub use channel::Side;

use core::fmt;

/// A failed system call: what was being done and the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub op: &'static str,
    pub errno: i32,
}

/// Result with a system call error.
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// The errno (an `Option` to read like other error types' accessors).
    pub fn errno(&self) -> Option<i32> {
        Some(self.errno)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match errno_name(self.errno) {
            Some(name) => write!(f, "{}: {name} (errno {})", self.op, self.errno),
            None => write!(f, "{}: errno {}", self.op, self.errno),
        }
    }
}

impl std::error::Error for Error {}

/// Symbolic name of the errno values the callers are likely to meet; `None` for the rest.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return None,
    })
}
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The calling thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(op: &'static str, ret: libc::c_int) -> Result<libc::c_int> {
    if ret < 0 {
        Err(Error { op, errno: errno() })
    } else {
        Ok(ret)
    }
}

fn check_size(op: &'static str, ret: libc::ssize_t) -> Result<usize> {
    usize::try_from(ret).map_err(|_| Error { op, errno: errno() })
}

fn owned(op: &'static str, fd: libc::c_int) -> Result<OwnedFd> {
    let fd = check(op, fd)?;
    // SAFETY: `fd` was just returned by the kernel, is valid and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(core::ptr::null(), CStr::as_ptr)
}

/// mount(2).
pub fn mount(
    op: &'static str,
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<()> {
    let data_ptr = opt_ptr(data).cast::<libc::c_void>();
    // SAFETY: all pointers are NUL-terminated strings (or NULL) that outlive the call.
    let ret = unsafe {
        libc::mount(
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            data_ptr,
        )
    };
    check(op, ret).map(drop)
}

/// umount2(2).
pub fn umount(op: &'static str, target: &CStr, flags: libc::c_int) -> Result<()> {
    // SAFETY: `target` is a NUL-terminated string that outlives the call.
    check(op, unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// mkdir(2); an existing directory is not an error.
pub fn mkdir(op: &'static str, path: &CStr, mode: libc::mode_t) -> Result<()> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    match check(op, unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
        other => other.map(drop),
    }
}

/// The device number of the file system holding `path` (stat(2) st_dev).
pub fn stat_dev(op: &'static str, path: &CStr) -> Result<u64> {
    let mut st = core::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `path` is NUL-terminated; `st` is a valid, writable stat buffer.
    check(op, unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: stat(2) succeeded, so it filled the buffer (which was zeroed anyway).
    Ok(unsafe { st.assume_init() }.st_dev)
}

/// open(2) with O_CLOEXEC added.
pub fn open(op: &'static str, path: &CStr, flags: libc::c_int) -> Result<OwnedFd> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    owned(op, unsafe {
        libc::open(path.as_ptr(), flags | libc::O_CLOEXEC)
    })
}

/// read(2) into `buf`.
pub fn read(op: &'static str, fd: RawFd, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    check_size(op, unsafe {
        libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
    })
}

/// A non-blocking read of a terminal (a pty's master, or bay0's console): `Some(n)`
/// bytes (0: nothing now), or `None` once its other side is gone (EOF, or EIO from a
/// pty's master whose every program closed the other end) or the read fails. Such a
/// descriptor polls EPOLLHUP for good: the caller stops watching it, or its level-triggered
/// wake-ups would spin the event loop.
pub fn read_terminal(op: &'static str, fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    match read(op, fd, buf) {
        Ok(0) => None,
        Ok(n) => Some(n),
        Err(e) if matches!(e.errno, libc::EAGAIN | libc::EINTR) => Some(0),
        Err(_) => None,
    }
}

/// write(2) of `buf`.
pub fn write(op: &'static str, fd: RawFd, buf: &[u8]) -> Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    check_size(op, unsafe {
        libc::write(fd, buf.as_ptr().cast(), buf.len())
    })
}

/// A set of signals.
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl core::fmt::Debug for SigSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SigSet")
    }
}

impl SigSet {
    /// The set holding exactly `signals`.
    pub fn of(signals: &[libc::c_int]) -> Self {
        let mut set = core::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: `set` is a valid sigset_t buffer; sigemptyset initialises it.
        unsafe { libc::sigemptyset(set.as_mut_ptr()) };
        for &sig in signals {
            // SAFETY: `set` was initialised above; invalid numbers only return EINVAL.
            unsafe { libc::sigaddset(set.as_mut_ptr(), sig) };
        }
        // SAFETY: initialised by sigemptyset above.
        SigSet(unsafe { set.assume_init() })
    }
}

/// Replace the signal mask of the (only) thread with `set`.
pub fn set_sigmask(set: &SigSet) -> Result<()> {
    // SAFETY: `set.0` is an initialised sigset_t; the old mask is not requested.
    let ret = unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set.0, core::ptr::null_mut()) };
    check("sigprocmask", ret).map(drop)
}

/// A signalfd for `set` (the signals must be blocked).
pub fn signalfd(set: &SigSet) -> Result<OwnedFd> {
    let flags = libc::SFD_CLOEXEC | libc::SFD_NONBLOCK;
    // SAFETY: `set.0` is an initialised sigset_t; -1 asks for a new descriptor.
    owned("signalfd", unsafe { libc::signalfd(-1, &set.0, flags) })
}

/// Read one pending signal number from a signalfd; `None` when none is pending.
pub fn read_signal(fd: &OwnedFd) -> Result<Option<i32>> {
    let mut info = core::mem::MaybeUninit::<libc::signalfd_siginfo>::zeroed();
    let size = core::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is a writable buffer of exactly `size` bytes.
    let ret = unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
    match check_size("read signalfd", ret) {
        Ok(n) if n == size => {
            // SAFETY: the kernel filled the whole structure.
            let info = unsafe { info.assume_init() };
            Ok(i32::try_from(info.ssi_signo).ok())
        }
        Ok(_) => Ok(None),
        Err(e) if e.errno() == Some(libc::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Wait (blocking) for one signal of `set`; returns its number.
pub fn sigwait(set: &SigSet) -> Result<i32> {
    loop {
        // SAFETY: `set.0` is initialised; no siginfo is requested.
        let ret = unsafe { libc::sigwaitinfo(&set.0, core::ptr::null_mut()) };
        match check("sigwaitinfo", ret) {
            Err(e) if e.errno() == Some(libc::EINTR) => continue,
            other => return other,
        }
    }
}

/// A monotonic, non-blocking timerfd.
pub fn timerfd() -> Result<OwnedFd> {
    let flags = libc::TFD_CLOEXEC | libc::TFD_NONBLOCK;
    // SAFETY: plain system call with constant arguments.
    owned("timerfd_create", unsafe {
        libc::timerfd_create(libc::CLOCK_MONOTONIC, flags)
    })
}

fn timespec_ms(ms: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(ms / 1000).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

/// Arm `fd` to fire after `first_ms` and then every `every_ms` (0: once; both 0: disarm).
pub fn timer_set(fd: &OwnedFd, first_ms: u64, every_ms: u64) -> Result<()> {
    let spec = libc::itimerspec {
        it_interval: timespec_ms(every_ms),
        it_value: timespec_ms(first_ms),
    };
    // SAFETY: `spec` is a valid itimerspec; the old value is not requested.
    let ret = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, core::ptr::null_mut()) };
    check("timerfd_settime", ret).map(drop)
}

/// Consume a timerfd expiry; returns how many periods elapsed (0 if none).
pub fn timer_ack(fd: &OwnedFd) -> Result<u64> {
    let mut buf = [0u8; 8];
    match read("read timerfd", fd.as_raw_fd(), &mut buf) {
        Ok(8) => Ok(u64::from_ne_bytes(buf)),
        Ok(_) => Ok(0),
        Err(e) if e.errno() == Some(libc::EAGAIN) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Pins the locks of the kernel's one anonymous inode; bay0 keeps the descriptor for its
/// whole life. Every eventfd, epoll, timerfd, signalfd and inotify descriptor of the
/// machine (and pidfd before Linux 6.9) is a file of that one inode, so every process,
/// in every room and on the host, locks the same inode through them: one namespace room
/// taking an exclusive flock or a byte-range write lock on its own eventfd was seen by
/// every other room trying one on its own (a channel between rooms no courier approves),
/// and would stall a host program waiting for one. Held here first: a shared flock and a
/// whole-file OFD read lock, so nobody can ever take an exclusive flock or a write lock
/// there again, and what anyone else can take (shared and read locks) changes nothing
/// another process can see: the first conflicting lock the kernel reports is always
/// this one (escape suite: anon-lock).
pub fn pin_anon_inode_locks() -> Result<OwnedFd> {
    // SAFETY: plain system call with constant arguments.
    let fd = owned("eventfd for the anonymous inode's locks", unsafe {
        libc::eventfd(0, libc::EFD_CLOEXEC)
    })?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let ret = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    check("flock the anonymous inode (shared)", ret)?;
    // SAFETY: a zeroed flock is a valid value; the fields are set below.
    let mut lock: libc::flock = unsafe { core::mem::zeroed() };
    lock.l_type = libc::F_RDLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start 0, l_len 0: the whole file, however far it grows; an OFD lock (l_pid 0)
    // belongs to this open file description, not to the process, so closing another
    // descriptor of the inode (bay0 closes timerfds and signalfds) does not drop it.
    // SAFETY: F_OFD_SETLK reads the valid flock struct we pass.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    check("lock the anonymous inode (OFD read lock)", ret)?;
    Ok(fd)
}

/// A new epoll instance.
pub fn epoll() -> Result<OwnedFd> {
    // SAFETY: plain system call with a constant flag.
    owned("epoll_create1", unsafe {
        libc::epoll_create1(libc::EPOLL_CLOEXEC)
    })
}

/// Watch `fd` for input on `ep`, reporting `token`.
pub fn epoll_add(ep: &OwnedFd, fd: RawFd, token: u64) -> Result<()> {
    epoll_ctl(
        ep,
        libc::EPOLL_CTL_ADD,
        fd,
        libc::EPOLLIN,
        token,
        "epoll_ctl add",
    )
}

/// Watch `fd` (added with [`epoll_add`]) for input, and also for room to write when
/// `writable` (a client that output waits for), reporting `token`.
pub fn epoll_watch(ep: &OwnedFd, fd: RawFd, token: u64, writable: bool) -> Result<()> {
    let out = if writable { libc::EPOLLOUT } else { 0 };
    epoll_ctl(
        ep,
        libc::EPOLL_CTL_MOD,
        fd,
        libc::EPOLLIN | out,
        token,
        "epoll_ctl mod",
    )
}

/// Stop watching `fd`.
pub fn epoll_del(ep: &OwnedFd, fd: RawFd) -> Result<()> {
    epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, 0, 0, "epoll_ctl del")
}

/// One `epoll_ctl` call: `op` on `fd` for `events`, reporting `token`; `what` names it in
/// the error.
fn epoll_ctl(
    ep: &OwnedFd,
    op: i32,
    fd: RawFd,
    events: i32,
    token: u64,
    what: &'static str,
) -> Result<()> {
    let mut ev = libc::epoll_event {
        events: events as u32,
        u64: token,
    };
    // SAFETY: `ev` is a valid epoll_event; the kernel copies it (and ignores it for DEL).
    let ret = unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd, &mut ev) };
    check(what, ret).map(drop)
}

/// Wait for events; writes their tokens into `tokens`, returns how many. EINTR gives 0.
pub fn epoll_wait(ep: &OwnedFd, tokens: &mut [u64; 16], timeout_ms: i32) -> Result<usize> {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
    // SAFETY: `events` is writable for 16 entries, the count passed.
    let ret = unsafe { libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), 16, timeout_ms) };
    let n = match check("epoll_wait", ret) {
        Err(e) if e.errno() == Some(libc::EINTR) => return Ok(0),
        other => usize::try_from(other?).unwrap_or(0),
    };
    for (slot, ev) in tokens.iter_mut().zip(events.iter()).take(n) {
        *slot = ev.u64;
    }
    Ok(n.min(16))
}

/// What one waitpid(-1, WNOHANG) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    /// A child ended: its pid and raw wait status.
    Child { pid: i32, status: i32 },
    /// Children exist but none has ended.
    Running,
    /// No children at all.
    NoChildren,
}

/// Reap at most one ended child without blocking.
pub fn reap_one() -> Result<Reaped> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let ret = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        return match check("waitpid", ret) {
            Ok(0) => Ok(Reaped::Running),
            Ok(pid) => Ok(Reaped::Child { pid, status }),
            Err(e) if e.errno() == Some(libc::ECHILD) => Ok(Reaped::NoChildren),
            Err(e) if e.errno() == Some(libc::EINTR) => continue,
            Err(e) => Err(e),
        };
    }
}

/// Reap `pid` if it has ended: its raw status, or `None` while it runs.
pub fn reap_pid(pid: i32) -> Result<Option<i32>> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    Ok((check("waitpid", ret)? == pid).then_some(status))
}

/// Wait (blocking) for `pid` to end; its raw status.
pub fn reap_pid_blocking(pid: i32) -> Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        match check("waitpid", unsafe { libc::waitpid(pid, &mut status, 0) }) {
            Err(e) if e.errno() == Some(libc::EINTR) => continue,
            other => return other.map(|_| status),
        }
    }
}

/// kill(2). `pid == -1` signals every process we may signal except ourselves.
pub fn kill(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: plain system call with integer arguments.
    check("kill", unsafe { libc::kill(pid, sig) }).map(drop)
}

/// sync(2).
pub fn sync() {
    // SAFETY: plain system call without arguments; it cannot fail.
    unsafe { libc::sync() }
}

/// reboot(2) with one of the LINUX_REBOOT_CMD_* / RB_* commands.
pub fn reboot(cmd: libc::c_int) -> Result<()> {
    // SAFETY: plain system call; on success for power off/restart it does not return.
    check("reboot", unsafe { libc::reboot(cmd) }).map(drop)
}

/// Outcome of fork(2) as seen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    Parent(i32),
    Child,
}

/// fork(2), for a caller without threads (bay0, its only user), whose child may then run
/// any code. (A threaded caller's child could find a lock held forever by a thread it
/// does not have; the agent and the jail, which have threads or may, use their own.)
pub fn fork() -> Result<Fork> {
    // SAFETY: fork itself has no preconditions; what the child may do is the caller's
    // (above): bay0 is single-threaded, so no lock is held by another thread in its child.
    let pid = check("fork", unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent(pid)
    })
}

/// unshare(2).
pub fn unshare(flags: libc::c_int) -> Result<()> {
    // SAFETY: plain system call with an integer argument.
    check("unshare", unsafe { libc::unshare(flags) }).map(drop)
}

/// Ask the kernel to send `sig` to us when our parent dies.
pub fn set_parent_death_signal(sig: i32) -> Result<()> {
    let sig = libc::c_ulong::try_from(sig).unwrap_or(0);
    // SAFETY: PR_SET_PDEATHSIG takes one integer argument.
    check("prctl PDEATHSIG", unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, sig)
    })
    .map(drop)
}

/// Make `cmd`'s child start with an empty signal mask and default SIGPIPE: PID 1
/// blocks the signals it reads from its signalfd, and children inherit that mask.
pub fn clean_signals_on_exec(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child before exec; it only calls
    // async-signal-safe functions and touches no locks or heap (see below).
    unsafe {
        cmd.pre_exec(reset_signals);
    }
}

/// Runs in a forked child: only async-signal-safe calls.
fn reset_signals() -> std::io::Result<()> {
    let empty = SigSet::of(&[]);
    // SAFETY: `empty.0` is an initialised sigset_t; the old mask is not requested.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty.0, core::ptr::null_mut()) };
    // SAFETY: restoring the default disposition of SIGPIPE has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    Ok(())
}

/// Put the terminal on `fd` into "room console" mode: no line editing, no echo and no
/// signal keys on the host side (the room's own tty does all of that), output
/// post-processing kept so host-side log lines still end in CR LF. `Ok(false)` when
/// `fd` is not a terminal.
pub fn console_passthrough(fd: RawFd) -> Result<bool> {
    // SAFETY: isatty only inspects the descriptor number.
    if unsafe { libc::isatty(fd) } != 1 {
        return Ok(false);
    }
    // SAFETY: termios is plain old data; all-zero is a valid value to be overwritten.
    let mut t: libc::termios = unsafe { core::mem::zeroed() };
    // SAFETY: `t` is a valid, writable termios for the kernel to fill.
    check("read the console mode", unsafe {
        libc::tcgetattr(fd, &mut t)
    })?;
    t.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ECHONL | libc::ISIG | libc::IEXTEN);
    t.c_iflag &= !(libc::IXON | libc::ICRNL | libc::INLCR | libc::IGNCR | libc::ISTRIP);
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    // SAFETY: `t` is the initialised termios read above, modified field by field.
    check("set the console mode", unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, &t)
    })?;
    Ok(true)
}

/// The width in columns of the terminal on `fd`; 0 when `fd` is no terminal or its size
/// is not known (a serial line's is 0 until someone sets it).
pub fn columns(fd: RawFd) -> usize {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into `size`, which outlives the call.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } != 0 {
        return 0;
    }
    usize::from(size.ws_col)
}

/// Sleep until a signal handler runs (none ever does): the "never return" of PID 1.
pub fn pause_forever() -> ! {
    loop {
        // SAFETY: plain system call without arguments.
        unsafe { libc::pause() };
    }
}

/// Milliseconds on the monotonic clock.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let ms = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000;
    secs.saturating_mul(1000).saturating_add(ms)
}

/// A pseudo-terminal pair: (master, non-blocking, for bay0; slave, raw, for the child).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd)> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK;
    let master = open("open /dev/ptmx", c"/dev/ptmx", flags)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the valid pointer.
    let ret = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) };
    check("unlock pty", ret)?;
    let slave_flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new descriptor.
    let slave = owned("open pty peer", unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, slave_flags)
    })?;
    set_raw(slave.as_raw_fd())?;
    Ok((master, slave))
}

/// Puts a tty in raw mode (bytes pass unchanged, no echo, no signals).
pub fn set_raw(fd: RawFd) -> Result<()> {
    let mut t = core::mem::MaybeUninit::<libc::termios>::zeroed();
    // SAFETY: `t` is a valid, writable termios buffer for the call.
    check("read tty mode", unsafe {
        libc::tcgetattr(fd, t.as_mut_ptr())
    })?;
    // SAFETY: tcgetattr succeeded and filled the buffer.
    let mut t = unsafe { t.assume_init() };
    // SAFETY: cfmakeraw only edits the struct it is given.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: `t` is a valid termios for the call.
    check("set tty mode", unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, &t)
    })
    .map(drop)
}

/// Sets O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: RawFd) -> Result<()> {
    // SAFETY: F_GETFL/F_SETFL only read and set this descriptor's status flags.
    let flags = check("fcntl F_GETFL", unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    check("fcntl F_SETFL", ret).map(drop)
}

/// A pipe: (read end, non-blocking, for bay0; write end for a child). Both close on exec.
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check("pipe", unsafe {
        libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC)
    })?;
    let [r, w] = fds;
    let (r, w) = (owned("pipe", r)?, owned("pipe", w)?);
    set_nonblocking(r.as_raw_fd())?;
    Ok((r, w))
}

/// The uid of the process at the other end of a Unix socket (SO_PEERCRED).
pub fn peer_uid(fd: RawFd) -> Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = core::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writing and sized as the option requires.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    check("SO_PEERCRED", ret).map(|_| cred.uid)
}

const WDIOC_KEEPALIVE: libc::c_ulong = 0x8004_5705; // _IOR('W', 5, int)
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xc004_5706; // _IOWR('W', 6, int)

/// Set the watchdog timeout; returns the timeout the driver actually chose.
pub fn watchdog_set_timeout(fd: &OwnedFd, secs: u32) -> Result<u32> {
    let mut val = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through the valid pointer.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), WDIOC_SETTIMEOUT, &mut val) };
    check("WDIOC_SETTIMEOUT", ret)?;
    Ok(u32::try_from(val).unwrap_or(0))
}

/// Tickle the watchdog.
pub fn watchdog_keepalive(fd: &OwnedFd) -> Result<()> {
    let mut dummy: libc::c_int = 0;
    // SAFETY: WDIOC_KEEPALIVE may write one int through the valid pointer.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), WDIOC_KEEPALIVE, &mut dummy) };
    check("WDIOC_KEEPALIVE", ret).map(drop)
}

/// EVIOCGBIT(EV_KEY): fill `bits` with the key bitmap of an evdev device.
pub fn evdev_key_bits(fd: &OwnedFd, bits: &mut [u8; 96]) -> Result<usize> {
    const EV_KEY: libc::c_ulong = 1;
    // _IOC(_IOC_READ, 'E', 0x20 + EV_KEY, len)
    let req: libc::c_ulong = (2 << 30) | (96 << 16) | (0x45 << 8) | (0x20 + EV_KEY);
    // SAFETY: the request encodes the buffer length (96), and `bits` is that long.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, bits.as_mut_ptr()) };
    Ok(usize::try_from(check("EVIOCGBIT", ret)?).unwrap_or(0))
}

/// EVIOCSCLOCKID: an evdev device dates its events by CLOCK_MONOTONIC from now on (the
/// clock of [`monotonic_ms`]; the default is the wall clock, which can jump).
pub fn evdev_monotonic(fd: &OwnedFd) -> Result<()> {
    // _IOC(_IOC_WRITE, 'E', 0xa0, sizeof(int))
    let req: libc::c_ulong = (1 << 30) | (4 << 16) | (0x45 << 8) | 0xa0;
    let clock: libc::c_int = libc::CLOCK_MONOTONIC;
    // SAFETY: the request reads one int from the pointer, and `clock` is one.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, &clock) };
    check("EVIOCSCLOCKID", ret).map(drop)
}

/// Connects a non-blocking Unix stream socket to `path` and writes `hello` (a short
/// line: it fits the empty socket buffer); the connection, close-on-exec. A listener that
/// does not accept (its backlog full) is an error, never a wait.
pub fn connect_unix(path: &std::path::Path, hello: &[u8]) -> Result<OwnedFd> {
    let fd = connect_only(path)?;
    write_hello(&fd, hello)?;
    Ok(fd)
}

/// Writes a new connection's first line whole, in one write (a short line fits the empty
/// socket buffer; a partial write is EAGAIN, never a wait).
pub(crate) fn write_hello(fd: &OwnedFd, hello: &[u8]) -> Result<()> {
    let op = "write the connection's first line";
    if write(op, fd.as_raw_fd(), hello)? != hello.len() {
        return Err(Error {
            op,
            errno: libc::EAGAIN,
        });
    }
    Ok(())
}

/// Connects a non-blocking Unix stream socket to `path` (see [`connect_unix`]) and
/// writes nothing; the connection, close-on-exec.
pub fn connect_only(path: &std::path::Path) -> Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let flags = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: plain socket(2) call; the result is checked and owned by `owned`.
    let fd = owned("socket(AF_UNIX)", unsafe {
        libc::socket(libc::AF_UNIX, flags, 0)
    })?;
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(Error {
            op: "connect: socket path too long",
            errno: libc::ENAMETOOLONG,
        });
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = core::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes for the duration of the call.
    let ret = unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) };
    check("connect", ret)?;
    Ok(fd)
}

/// Starts `argv` (see [`spawn`], with `clone_flags`) holding exactly two connections, as
/// its stdin and stdout (for the courier: see [`channel`] for how they are made); its
/// stderr is a pipe. Returns the child's pid and the pipe's (non-blocking) read end.
pub fn spawn_connected(
    argv: &[std::ffi::CString],
    conns: [OwnedFd; 2],
    clone_flags: libc::c_int,
) -> Result<(i32, OwnedFd)> {
    let [first, second] = conns;
    let (err, err_w) = pipe()?;
    let stdio = [first.as_raw_fd(), second.as_raw_fd(), err_w.as_raw_fd()];
    Ok((spawn(&Spawn::child(argv, stdio, clone_flags))?, err))
}

/// A framebuffer's raw `fb_var_screeninfo` (160 bytes) and `fb_fix_screeninfo` (80
/// bytes), as FBIOGET_VSCREENINFO and FBIOGET_FSCREENINFO return them.
pub fn fb_screeninfo(fd: &OwnedFd) -> Result<([u8; 160], [u8; 80])> {
    const FBIOGET_VSCREENINFO: libc::c_ulong = 0x4600;
    const FBIOGET_FSCREENINFO: libc::c_ulong = 0x4602;
    let (mut var, mut fix) = ([0u8; 160], [0u8; 80]);
    // SAFETY: the kernel writes sizeof(struct fb_var_screeninfo) = 160 bytes into `var`.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), FBIOGET_VSCREENINFO, var.as_mut_ptr()) };
    check("FBIOGET_VSCREENINFO", ret)?;
    // SAFETY: the kernel writes sizeof(struct fb_fix_screeninfo) = 80 bytes into `fix`.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), FBIOGET_FSCREENINFO, fix.as_mut_ptr()) };
    check("FBIOGET_FSCREENINFO", ret)?;
    Ok((var, fix))
}

/// KDSETMODE on a virtual console: graphics (the kernel stops drawing the text console on
/// the framebuffer) or text (it draws it again).
pub fn kd_graphics(tty: &OwnedFd, graphics: bool) -> Result<()> {
    const KDSETMODE: libc::c_ulong = 0x4b3a;
    let mode: libc::c_ulong = if graphics { 1 } else { 0 };
    // SAFETY: KDSETMODE takes an integer argument by value.
    check("KDSETMODE", unsafe {
        libc::ioctl(tty.as_raw_fd(), KDSETMODE, mode)
    })
    .map(drop)
}

/// Shows a whole frame on /dev/fb0: `frame` draws it for the framebuffer's raw
/// screeninfo (see [`fb_screeninfo`]; `None`: a format it cannot draw). With `graphics`
/// the kernel's text console is switched off the framebuffer first (KDSETMODE on
/// /dev/tty0, when there is one); without, it is switched back on after the frame, and
/// what was typed on it in the meantime is dropped ([`drop_typed`]).
pub fn fb_present(
    frame: impl FnOnce(&[u8; 160], &[u8; 80]) -> Option<Vec<u8>>,
    graphics: bool,
) -> Result<()> {
    let fb = open("open /dev/fb0", c"/dev/fb0", libc::O_RDWR)?;
    let (var, fix) = fb_screeninfo(&fb)?;
    let frame = frame(&var, &fix).ok_or(Error {
        op: "draw on /dev/fb0 (its pixel format)",
        errno: libc::EINVAL,
    })?;
    let tty = open(
        "open /dev/tty0",
        c"/dev/tty0",
        libc::O_RDWR | libc::O_NOCTTY,
    )
    .ok();
    if let (Some(t), true) = (&tty, graphics) {
        kd_graphics(t, true)?;
    }
    pwrite_all("draw on /dev/fb0", &fb, &frame, 0)?;
    match (&tty, graphics) {
        // What was typed on the text console while the frame was up goes with it: the
        // kernel's keyboard feeds the text console as well as evdev. (The key that
        // answered the courier prompt can still queue its byte, or autorepeats, after
        // this: bay0 holds its console's keys until that key's release and flushes then.)
        (Some(t), false) => kd_graphics(t, false).and_then(|()| drop_typed(t.as_raw_fd())),
        _ => Ok(()),
    }
}

/// Whether the terminal `tty` is a virtual console, fed by the machine's keyboard: only
/// one answers KDGKBTYPE (a serial line or a pty does not).
pub fn is_virtual_console(tty: RawFd) -> bool {
    const KDGKBTYPE: libc::c_ulong = 0x4B33;
    let mut kind: libc::c_char = 0;
    // SAFETY: KDGKBTYPE writes one char into `kind`, which outlives the call.
    unsafe { libc::ioctl(tty, KDGKBTYPE, &mut kind) == 0 }
}

/// Drops what was typed on a terminal and not read yet (tcflush TCIFLUSH: the line
/// discipline's buffer and the input its driver has not passed on yet).
pub fn drop_typed(tty: RawFd) -> Result<()> {
    // SAFETY: tcflush takes a descriptor and a constant by value.
    check("tcflush", unsafe { libc::tcflush(tty, libc::TCIFLUSH) }).map(drop)
}

/// Writes all of `buf` at `offset` of `fd` (pwrite(2), retried for short writes).
pub fn pwrite_all(op: &'static str, fd: &OwnedFd, buf: &[u8], offset: u64) -> Result<()> {
    let mut done = 0usize;
    while let Some(rest) = buf.get(done..).filter(|r| !r.is_empty()) {
        let at = libc::off_t::try_from(offset.saturating_add(done as u64)).unwrap_or(0);
        // SAFETY: `rest` is valid for reads of its length.
        let n = unsafe { libc::pwrite(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len(), at) };
        match check_size(op, n)? {
            0 => {
                return Err(Error {
                    op,
                    errno: libc::ENOSPC,
                })
            }
            n => done += n,
        }
    }
    Ok(())
}

/// Fills `buf` from the kernel's random number generator.
pub fn getrandom(buf: &mut [u8]) -> Result<()> {
    let mut done = 0usize;
    while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
        // SAFETY: `rest` is valid for writes of its length.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match check_size("getrandom", n) {
            Ok(n) => done += n,
            Err(e) if e.errno == libc::EINTR => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether KVM can run a virtual machine here: /dev/kvm opens, speaks API version 12, and
/// KVM_CREATE_VM succeeds (the test VM is closed at once). The error says which step
/// failed. The same ioctl numbers on x86_64 and arm64.
pub fn kvm_usable() -> Result<()> {
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00; // _IO(KVMIO, 0x00)
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01; // _IO(KVMIO, 0x01)
    let kvm = open("open /dev/kvm", c"/dev/kvm", libc::O_RDWR)?;
    // SAFETY: KVM_GET_API_VERSION takes no argument.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if check("KVM_GET_API_VERSION", version)? != 12 {
        return Err(Error {
            op: "KVM API version is not 12",
            errno: libc::EINVAL,
        });
    }
    // SAFETY: KVM_CREATE_VM takes the machine type (0: the default) by value and returns
    // a new descriptor, owned (and closed) right here.
    let vm = owned("KVM_CREATE_VM", unsafe {
        libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0)
    })?;
    drop(vm);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_anonymous_inode_locks_leave_nothing_for_others_to_take_or_see() {
        let pin = pin_anon_inode_locks().unwrap();
        // Another descriptor of the same inode (a new open file description, as another
        // room's eventfd or epoll would be).
        // SAFETY: plain system call with constant arguments.
        let other = owned("eventfd", unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) }).unwrap();
        // SAFETY: plain system call with constant arguments.
        let ep = owned("epoll", unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).unwrap();
        for fd in [&other, &ep] {
            // SAFETY: flock on descriptors this test owns.
            let ex = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            assert_eq!((ex, errno()), (-1, libc::EWOULDBLOCK));
            // SAFETY: as above.
            let sh = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
            assert_eq!(sh, 0);
            // SAFETY: as above.
            assert_eq!(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_UN) }, 0);
            // SAFETY: a zeroed flock asking about a whole-file write lock.
            let mut l: libc::flock = unsafe { core::mem::zeroed() };
            l.l_type = libc::F_WRLCK as libc::c_short;
            // SAFETY: F_OFD_GETLK reads and fills the valid struct.
            let got = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut l) };
            assert_eq!(got, 0);
            let seen = (i32::from(l.l_type), l.l_start, l.l_len, l.l_pid);
            assert_eq!(seen, (libc::F_RDLCK, 0, 0, -1));
        }
        drop(pin);
    }

    #[test]
    fn ioctl_numbers_match_linux_headers() {
        // linux/watchdog.h: WDIOC_KEEPALIVE _IOR('W', 5, int), WDIOC_SETTIMEOUT _IOWR(.., 6, int)
        let ior = |nr: libc::c_ulong| (2 << 30) | (4 << 16) | (0x57 << 8) | nr;
        assert_eq!(WDIOC_KEEPALIVE, ior(5));
        assert_eq!(WDIOC_SETTIMEOUT, ior(6) | (1 << 30));
    }

    #[test]
    fn a_terminal_tells_its_width_and_anything_else_says_0() {
        let (master, slave) = open_pty().unwrap();
        assert_eq!(columns(slave.as_raw_fd()), 0, "a new pty has no size yet");
        let size = libc::winsize {
            ws_row: 50,
            ws_col: 132,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the valid pointer.
        let set = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(set, 0);
        assert_eq!(columns(slave.as_raw_fd()), 132);
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(columns(file.as_raw_fd()), 0);
        assert_eq!(columns(-1), 0);
    }

    #[test]
    fn timerfd_fires_and_acks() {
        let fd = timerfd().unwrap();
        timer_set(&fd, 1, 0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(timer_ack(&fd).unwrap(), 1);
        assert_eq!(timer_ack(&fd).unwrap(), 0);
    }

    #[test]
    fn epoll_reports_the_token_of_a_ready_fd() {
        let ep = epoll().unwrap();
        let t = timerfd().unwrap();
        epoll_add(&ep, t.as_raw_fd(), 42).unwrap();
        timer_set(&t, 1, 0).unwrap();
        let mut tokens = [0u64; 16];
        assert_eq!(epoll_wait(&ep, &mut tokens, 2000).unwrap(), 1);
        assert_eq!(tokens[0], 42);
        epoll_del(&ep, t.as_raw_fd()).unwrap();
    }

    #[test]
    fn epoll_watch_reports_room_to_write_only_while_asked() {
        let ep = epoll().unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        epoll_add(&ep, a.as_raw_fd(), 7).unwrap();
        let mut tokens = [0u64; 16];
        // Writable all along, but only input was asked for.
        assert_eq!(epoll_wait(&ep, &mut tokens, 0).unwrap(), 0);
        epoll_watch(&ep, a.as_raw_fd(), 7, true).unwrap();
        assert_eq!(epoll_wait(&ep, &mut tokens, 2000).unwrap(), 1);
        assert_eq!(tokens[0], 7);
        epoll_watch(&ep, a.as_raw_fd(), 7, false).unwrap();
        assert_eq!(epoll_wait(&ep, &mut tokens, 0).unwrap(), 0);
        // Not watched at all: an error, not a silent add.
        let (c, _d) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(epoll_watch(&ep, c.as_raw_fd(), 8, true).is_err());
    }

    #[test]
    fn connect_unix_sends_its_line_and_never_waits() {
        let dir = std::env::temp_dir().join(format!("anchor-sys-connect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let fd = connect_unix(&path, b"CONNECT 1025\n").unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let mut line = [0u8; 13];
        std::io::Read::read_exact(&mut peer, &mut line).unwrap();
        assert_eq!(&line, b"CONNECT 1025\n");
        drop(fd);
        assert_eq!(
            connect_unix(&dir.join("nobody"), b"x").unwrap_err().errno,
            libc::ENOENT
        );
        let mut r = [0u8; 64];
        getrandom(&mut r).unwrap();
        assert_ne!(r, [0u8; 64]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mkdir_tolerates_existing_and_reports_errno() {
        mkdir("mkdir", c"/tmp", 0o755).unwrap();
        let e = mkdir("mkdir", c"/nonexistent-bay0/x", 0o755).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
    }

    /// What was typed on a terminal and not read yet is gone after [`drop_typed`] (the
    /// courier prompt's answering key, typed on the text console too, reaches no room).
    #[test]
    fn typed_input_not_yet_read_is_dropped() {
        let (master, slave) = open_pty().unwrap();
        let mut m = std::fs::File::from(master);
        std::io::Write::write_all(&mut m, b"y").unwrap();
        drop_typed(slave.as_raw_fd()).unwrap();
        std::io::Write::write_all(&mut m, b"z").unwrap();
        let mut buf = [0u8; 8];
        let n = std::io::Read::read(&mut std::fs::File::from(slave), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"z");
    }
}
