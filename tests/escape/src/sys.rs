// SPDX-License-Identifier: GPL-3.0-or-later
//! Every raw system call the probe makes, each `unsafe` block with its reason. Each
//! function returns the kernel's answer: the result, or the errno. The arguments are
//! deliberately harmless (invalid images, zeroed attributes): a call that gets past the
//! permission checks fails on them, so an attempt never changes anything outside.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An errno.
pub type Errno = i32;
/// The kernel's answer.
pub type Answer<T> = Result<T, Errno>;

fn errno() -> Errno {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn int(ret: libc::c_long) -> Answer<libc::c_long> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

fn fd(ret: libc::c_long) -> Answer<OwnedFd> {
    let n = int(ret)?;
    let raw = RawFd::try_from(n).map_err(|_| libc::EBADF)?;
    // SAFETY: `raw` was just returned by the kernel as a new descriptor, owned by no one.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn c(s: &str) -> Answer<CString> {
    CString::new(s).map_err(|_| libc::EINVAL)
}

/// kill(2).
pub fn kill(pid: i32, sig: i32) -> Answer<()> {
    // SAFETY: plain integer arguments.
    int(unsafe { libc::kill(pid, sig) }.into()).map(drop)
}

/// ptrace(PTRACE_ATTACH) then, if that worked, PTRACE_DETACH.
pub fn ptrace_attach_detach(pid: i32) -> Answer<()> {
    // SAFETY: PTRACE_ATTACH takes no pointers.
    int(unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0usize, 0usize) })?;
    // SAFETY: as above.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0usize, 0usize) };
    Ok(())
}

/// unshare(2).
pub fn unshare(flags: libc::c_int) -> Answer<()> {
    // SAFETY: unshare only changes this (short-lived) process's namespaces.
    int(unsafe { libc::unshare(flags) }.into()).map(drop)
}

/// setns(2).
pub fn setns(ns: &OwnedFd) -> Answer<()> {
    // SAFETY: `ns` is an open descriptor; setns only changes this process.
    int(unsafe { libc::setns(ns.as_raw_fd(), 0) }.into()).map(drop)
}

/// open(2) with O_CLOEXEC.
pub fn open(path: &str, flags: libc::c_int) -> Answer<OwnedFd> {
    let p = c(path)?;
    // SAFETY: `p` is NUL-terminated and outlives the call.
    fd(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) }.into())
}

/// chroot(2).
pub fn chroot(path: &str) -> Answer<()> {
    let p = c(path)?;
    // SAFETY: `p` is NUL-terminated and outlives the call.
    int(unsafe { libc::chroot(p.as_ptr()) }.into()).map(drop)
}

/// fchdir(2).
pub fn fchdir(dir: &OwnedFd) -> Answer<()> {
    // SAFETY: `dir` is an open descriptor.
    int(unsafe { libc::fchdir(dir.as_raw_fd()) }.into()).map(drop)
}

/// pivot_root(2).
pub fn pivot_root(new_root: &str, put_old: &str) -> Answer<()> {
    let (n, o) = (c(new_root)?, c(put_old)?);
    // SAFETY: both strings are NUL-terminated and outlive the call.
    int(unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) }).map(drop)
}

/// mount(2), then umount2 if it worked (nothing is left mounted).
pub fn mount(source: &str, target: &str, fstype: &str, flags: libc::c_ulong) -> Answer<()> {
    let (s, t, f) = (c(source)?, c(target)?, c(fstype)?);
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let ret = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, core::ptr::null()) };
    int(ret.into())?;
    // SAFETY: as above.
    unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    Ok(())
}

/// mount(2) of `target` with MS_REMOUNT (and `flags`), read-write.
pub fn remount(target: &str, flags: libc::c_ulong) -> Answer<()> {
    let t = c(target)?;
    // SAFETY: `t` is NUL-terminated and outlives the call; the other pointers are NULL.
    let ret = unsafe {
        libc::mount(
            core::ptr::null(),
            t.as_ptr(),
            core::ptr::null(),
            flags,
            core::ptr::null(),
        )
    };
    int(ret.into()).map(drop)
}

/// mknod(2).
pub fn mknod(path: &str, mode: libc::mode_t, major: u32, minor: u32) -> Answer<()> {
    let p = c(path)?;
    // SAFETY: `p` is NUL-terminated and outlives the call.
    int(unsafe { libc::mknod(p.as_ptr(), mode, libc::makedev(major, minor)) }.into()).map(drop)
}

/// open_by_handle_at(2) with a forged handle for inode 2 (an ext4 or XFS root) of the
/// file system holding `dir`: the "shocker" escape.
pub fn open_by_forged_handle(dir: &OwnedFd) -> Answer<OwnedFd> {
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        f_handle: [u8; 8],
    }
    let mut h = Handle {
        bytes: 8,
        kind: 1, // FILEID_INO32_GEN
        f_handle: [2, 0, 0, 0, 0, 0, 0, 0],
    };
    // SAFETY: `h` is a valid struct file_handle with 8 bytes of handle, alive for the call.
    fd(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            dir.as_raw_fd(),
            &raw mut h,
            libc::O_RDONLY,
        )
    })
}

/// finit_module(2) of `file` (not a module: the kernel would reject it).
pub fn finit_module(file: &OwnedFd) -> Answer<()> {
    // SAFETY: a descriptor, an empty parameter string and no flags.
    int(unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) })
        .map(drop)
}

/// init_module(2) of 64 zero bytes (not a module).
pub fn init_module_garbage() -> Answer<()> {
    let image = [0u8; 64];
    // SAFETY: `image` is readable for its length; the parameter string is NUL-terminated.
    int(unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            c"".as_ptr(),
        )
    })
    .map(drop)
}

/// kexec_load(2) with no segments and an unknown architecture: past the permission
/// check the kernel answers EINVAL (nothing is loaded, nothing unloaded).
pub fn kexec_load_invalid() -> Answer<()> {
    // SAFETY: no segments (NULL, 0); flags carry an invalid architecture.
    int(unsafe {
        libc::syscall(
            libc::SYS_kexec_load,
            0usize,
            0usize,
            core::ptr::null::<u8>(),
            0x7fff_0000usize,
        )
    })
    .map(drop)
}

/// kexec_file_load(2) with invalid descriptors (EBADF past the permission check).
pub fn kexec_file_load_invalid() -> Answer<()> {
    // SAFETY: descriptors -1, an empty command line, no flags: nothing is read.
    int(unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            -1,
            -1,
            1usize,
            c"".as_ptr(),
            0usize,
        )
    })
    .map(drop)
}

/// bpf(BPF_MAP_CREATE) with zeroed attributes (map type 0: EINVAL past the checks).
pub fn bpf_map_create_invalid() -> Answer<()> {
    let attr = [0u8; 72];
    // SAFETY: `attr` is readable for the given size.
    int(unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), attr.len()) }).map(drop)
}

/// perf_event_open(2): a software CPU clock of this process, user space only.
pub fn perf_event_open_self() -> Answer<OwnedFd> {
    // struct perf_event_attr: type u32 @0 (1 = software), size u32 @4, config u64 @8
    // (0 = cpu clock), flags u64 @40 (bit 5 exclude_kernel, bit 6 exclude_hv).
    #[repr(C)]
    struct Attr {
        kind: u32,
        size: u32,
        config: u64,
        other: [u64; 3],
        flags: u64,
        rest: [u64; 10],
    }
    let attr = Attr {
        kind: 1,
        size: 128,
        config: 0,
        other: [0; 3],
        flags: (1 << 5) | (1 << 6),
        rest: [0; 10],
    };
    // SAFETY: `attr` is a zero-padded perf_event_attr of the size it declares (128).
    fd(unsafe { libc::syscall(libc::SYS_perf_event_open, &raw const attr, 0, -1, -1, 0) })
}

/// userfaultfd(2), user-mode faults only (what unprivileged users may ask for).
pub fn userfaultfd() -> Answer<OwnedFd> {
    const UFFD_USER_MODE_ONLY: libc::c_int = 1;
    // SAFETY: flags only.
    fd(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | UFFD_USER_MODE_ONLY) })
}

/// keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, create).
pub fn keyctl_session_keyring() -> Answer<libc::c_long> {
    // SAFETY: integer arguments only.
    int(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 1) })
}

/// fsopen(2) of tmpfs (the new mount API).
pub fn fsopen_tmpfs() -> Answer<OwnedFd> {
    // SAFETY: a NUL-terminated file system name, flags 0.
    fd(unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 0) })
}

/// open_tree(AT_FDCWD, "/", OPEN_TREE_CLONE): a detached copy of the root mount.
pub fn open_tree_clone_root() -> Answer<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    // SAFETY: a NUL-terminated path and integer flags.
    fd(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    })
}

/// syslog(SYSLOG_ACTION_READ_ALL): the kernel log ring.
pub fn syslog_read_all(buf: &mut [u8]) -> Answer<usize> {
    let len = libc::c_int::try_from(buf.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `buf` is writable for `len` bytes.
    let n = int(unsafe { libc::klogctl(3, buf.as_mut_ptr().cast(), len) }.into())?;
    usize::try_from(n).map_err(|_| libc::EINVAL)
}

/// The text of an errno.
pub fn describe(e: Errno) -> String {
    let text = std::io::Error::from_raw_os_error(e).to_string();
    match text.find(" (os error") {
        Some(i) => text.get(..i).unwrap_or(&text).to_string(),
        None => text,
    }
}

/// A child made by raw clone(2) with `flags` (plus SIGCHLD, no new stack: fork-like); the
/// child exits at once, the parent reaps it. Ok(()) when the kernel made the child.
pub fn clone_and_reap(flags: libc::c_ulong) -> Answer<()> {
    // SAFETY: without CLONE_VM the child has its own copy of memory and only calls _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: the child ends at once, touching nothing.
        unsafe { libc::_exit(0) };
    }
    let pid = int(pid)?;
    // SAFETY: reaps our own child; a null status pointer is allowed.
    unsafe { libc::waitpid(pid as libc::pid_t, core::ptr::null_mut(), 0) };
    Ok(())
}

/// clone3(2) with `flags` (struct clone_args in memory, where a seccomp filter cannot
/// look); the child exits at once, the parent reaps it.
pub fn clone3_and_reap(flags: u64) -> Answer<()> {
    let mut args = [0u64; 11];
    args[0] = flags;
    args[4] = libc::SIGCHLD as u64;
    // SAFETY: `args` is a valid struct clone_args (version 2, 88 bytes) for the call;
    // without CLONE_VM the child has its own memory and only calls _exit.
    let pid = unsafe { libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), 88usize) };
    if pid == 0 {
        // SAFETY: the child ends at once.
        unsafe { libc::_exit(0) };
    }
    let pid = int(pid)?;
    // SAFETY: reaps our own child.
    unsafe { libc::waitpid(pid as libc::pid_t, core::ptr::null_mut(), 0) };
    Ok(())
}

/// io_uring_setup(2) with one entry and zeroed parameters.
pub fn io_uring_setup() -> Answer<OwnedFd> {
    let mut params = [0u8; 120];
    // SAFETY: `params` is a zeroed struct io_uring_params (120 bytes) the kernel may fill.
    fd(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) })
}

/// process_vm_readv(2) of 8 bytes at `addr` of `pid`.
pub fn process_vm_read(pid: i32, addr: usize) -> Answer<usize> {
    let mut buf = [0u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes our own buffer; the remote address is only read by the
    // kernel after its permission check.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    int(n as libc::c_long).map(|n| n as usize)
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> Answer<OwnedFd> {
    // SAFETY: plain integer arguments.
    fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) })
}

/// pidfd_getfd(2): a copy of descriptor `target` of the process `pidfd` refers to.
pub fn pidfd_getfd(pidfd: &OwnedFd, target: i32) -> Answer<OwnedFd> {
    // SAFETY: plain integer arguments; a descriptor returned is owned by us.
    fd(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0u32) })
}

/// socket(2).
pub fn socket(domain: i32, kind: i32, protocol: i32) -> Answer<OwnedFd> {
    // SAFETY: plain integer arguments.
    fd(unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) }.into())
}

/// chmod(2) of `path` to `mode`, the mode it already has: the kernel checks ownership and
/// the mount's write access all the same, and a call that passes changes nothing.
pub fn chmod_same(path: &str, mode: libc::mode_t) -> Answer<()> {
    let p = c(path)?;
    // SAFETY: `p` is a NUL-terminated string alive for the call.
    int(unsafe { libc::chmod(p.as_ptr(), mode) }.into()).map(drop)
}

/// The raw sync(2) system call (the C library's sync() returns nothing and hides the
/// answer).
pub fn sync() -> Answer<()> {
    // SAFETY: sync takes no arguments.
    int(unsafe { libc::syscall(libc::SYS_sync) }).map(drop)
}

/// ioctl(fd, request, &zero): requests that read one byte (TIOCSTI: a NUL) or one int
/// (TIOCSETD: 0, N_TTY, the line discipline a terminal already has), or ignore it.
pub fn ioctl_byte(fd: RawFd, request: libc::c_ulong) -> Answer<()> {
    let mut zero: libc::c_int = 0;
    // SAFETY: the pointer is to a valid int that outlives the call.
    int(unsafe { libc::ioctl(fd, request, &raw mut zero) }.into()).map(drop)
}

/// Each of `requests` (terminal ioctls taking a byte, 0) made on a terminal of the
/// probe's own, never on the console it reports on (a TIOCSTI the room's own kernel
/// allows would push a byte into the console's input): a child in a session of its own
/// opens a fresh pty, which becomes its controlling terminal (TIOCSTI asks for that), makes
/// the requests and sends their answers back. `Err` when the child could not get its pty.
pub fn on_own_terminal(requests: [libc::c_ulong; 3]) -> Answer<[Answer<()>; 3]> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }.into())?;
    let [r, w] = fds;
    // SAFETY: the probe has one thread; the child makes only system calls and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // [setup errno, answer 1, 2, 3] (0: succeeded).
        let mut out = [0i32; 4];
        let mut setup = || -> Answer<()> {
            // SAFETY: plain system call.
            int(unsafe { libc::setsid() }.into())?;
            // SAFETY: a NUL-terminated static path.
            let master = int(unsafe { libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR) }.into())?;
            let master = master as RawFd;
            let unlock: libc::c_int = 0;
            // SAFETY: TIOCSPTLCK reads one int from the valid pointer.
            int(unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) }.into())?;
            let mut n: libc::c_uint = 0;
            // SAFETY: TIOCGPTN writes one unsigned int to the valid pointer.
            int(unsafe { libc::ioctl(master, libc::TIOCGPTN, &mut n) }.into())?;
            let path = c(&format!("/dev/pts/{n}"))?;
            // SAFETY: a NUL-terminated path; without O_NOCTTY the session leader's first
            // terminal becomes its controlling one.
            let slave = int(unsafe { libc::open(path.as_ptr(), libc::O_RDWR) }.into())?;
            for (slot, req) in out.iter_mut().skip(1).zip(requests) {
                *slot = ioctl_byte(slave as RawFd, req).err().unwrap_or(0);
            }
            Ok(())
        };
        let set_up = setup().err().unwrap_or(0);
        if let Some(first) = out.first_mut() {
            *first = set_up;
        }
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_ne_bytes()).collect();
        // SAFETY: writes the valid buffer.
        unsafe { libc::write(w, bytes.as_ptr().cast(), bytes.len()) };
        // SAFETY: ends the child without running any of the parent's exit handlers.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: closes the write end, which the parent owns.
    unsafe { libc::close(w) };
    let mut bytes = [0u8; 16];
    let got = if pid > 0 {
        // SAFETY: reads into the valid buffer.
        unsafe { libc::read(r, bytes.as_mut_ptr().cast(), bytes.len()) }
    } else {
        -1
    };
    let fork_errno = errno();
    // SAFETY: closes the read end, which the parent owns.
    unsafe { libc::close(r) };
    if pid < 0 {
        return Err(fork_errno);
    }
    let mut status = 0;
    // SAFETY: reaps our own child; `status` is a valid int.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if got != 16 {
        return Err(libc::EIO);
    }
    let mut v = [0i32; 4];
    for (slot, b) in v.iter_mut().zip(bytes.chunks_exact(4)) {
        let mut four = [0u8; 4];
        four.copy_from_slice(b);
        *slot = i32::from_ne_bytes(four);
    }
    let a = |e: i32| if e == 0 { Ok(()) } else { Err(e) };
    match v {
        [0, x, y, z] => Ok([a(x), a(y), a(z)]),
        [e, ..] => Err(e),
    }
}

/// inotify_init1(IN_CLOEXEC).
pub fn inotify_init() -> Answer<OwnedFd> {
    // SAFETY: plain integer argument.
    fd(unsafe { libc::inotify_init1(libc::IN_CLOEXEC) }.into())
}

/// Blocks SIGRTMIN and queues it to this process until the kernel refuses (or `max`);
/// how many were queued (they stay queued while the process lives).
pub fn queue_rt_signals(max: u64) -> u64 {
    let sig = libc::SIGRTMIN();
    // SAFETY: an all-zero sigset_t is a valid (empty) set.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid sigset for the call.
    unsafe { libc::sigemptyset(&raw mut set) };
    // SAFETY: as above.
    unsafe { libc::sigaddset(&raw mut set, sig) };
    // SAFETY: blocks a signal of our own; `set` outlives the call.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &raw const set, core::ptr::null_mut()) };
    let value = libc::sigval {
        sival_ptr: core::ptr::null_mut(),
    };
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut n = 0;
    while n < max {
        // SAFETY: the signal goes to ourselves, where it is blocked.
        let r = unsafe { libc::sigqueue(me, sig, value) };
        if r != 0 {
            break;
        }
        n += 1;
    }
    n
}

/// io_setup(2) for `nr` events: the new AIO context.
pub fn io_setup(nr: u32) -> Answer<libc::c_ulong> {
    let mut ctx: libc::c_ulong = 0;
    // SAFETY: `ctx` is a valid aio_context_t (zero, as the call requires) the kernel fills.
    int(unsafe { libc::syscall(libc::SYS_io_setup, nr, &raw mut ctx) })?;
    Ok(ctx)
}

/// io_destroy(2).
pub fn io_destroy(ctx: libc::c_ulong) {
    // SAFETY: `ctx` is a context io_setup gave us; nothing is in flight on it.
    unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
}

/// How a child made by [`in_child`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The call in the child succeeded.
    Succeeded,
    /// The call in the child failed with this errno.
    Failed(Errno),
    /// The kernel killed the child with this signal (SIGSYS: a seccomp filter).
    Killed(i32),
}

/// Runs `call` (a raw system call returning the kernel's value) in a forked child, which
/// exits at once; how it ended. For calls that may kill the caller or change its
/// namespaces.
pub fn in_child(call: fn() -> libc::c_long) -> Answer<Ended> {
    // SAFETY: the probe has one thread; the child makes one system call and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let r = call();
        let code = if r >= 0 { 0 } else { (-r).clamp(1, 250) as i32 };
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) }
    }
    if pid < 0 {
        return Err(errno());
    }
    let mut status = 0;
    // SAFETY: reaps our own child; `status` is a valid int.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(if libc::WIFSIGNALED(status) {
        Ended::Killed(libc::WTERMSIG(status))
    } else {
        match libc::WEXITSTATUS(status) {
            0 => Ended::Succeeded,
            e => Ended::Failed(e),
        }
    })
}

/// unshare(CLONE_NEWUSER) through the x32 entry point (syscall number | 0x40000000): the
/// kernel's answer, negated errno on failure.
#[cfg(target_arch = "x86_64")]
pub fn x32_unshare_user() -> libc::c_long {
    const X32: libc::c_long = 0x4000_0000;
    // SAFETY: unshare only changes the calling (short-lived child) process.
    let r = unsafe { libc::syscall(libc::SYS_unshare | X32, libc::CLONE_NEWUSER) };
    if r < 0 {
        -libc::c_long::from(errno())
    } else {
        r
    }
}

/// unshare(CLONE_NEWUSER) through the 32-bit entry point (int 0x80, i386 number 310):
/// the kernel's answer (negated errno on failure).
#[cfg(target_arch = "x86_64")]
pub fn int80_unshare_user() -> libc::c_long {
    let nr: libc::c_long = 310;
    let ret: libc::c_long;
    // SAFETY: int 0x80 with eax = unshare and ebx = the flags takes no pointers; it only
    // changes the calling (short-lived child) process, and clobbers nothing but eax (rbx,
    // LLVM's, holds the flags only around the instruction and is restored).
    unsafe {
        core::arch::asm!(
            "xchg {flags}, rbx",
            "int 0x80",
            "xchg {flags}, rbx",
            flags = inout(reg) libc::CLONE_NEWUSER as libc::c_long => _,
            inlateout("rax") nr => ret,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            options(nostack)
        );
    }
    ret
}

/// add_key(2) of a "user" key into the session keyring.
pub fn add_key() -> Answer<libc::c_long> {
    // SAFETY: NUL-terminated static strings and a valid one-byte payload.
    int(unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            c"anchor-escape".as_ptr(),
            c"x".as_ptr(),
            1usize,
            -3i32, // KEY_SPEC_SESSION_KEYRING
        )
    })
}

/// request_key(2) of a "user" key that does not exist.
pub fn request_key() -> Answer<libc::c_long> {
    // SAFETY: NUL-terminated static strings, no callout info.
    int(unsafe {
        libc::syscall(
            libc::SYS_request_key,
            c"user".as_ptr(),
            c"anchor-escape-none".as_ptr(),
            core::ptr::null::<libc::c_char>(),
            0i32,
        )
    })
}

/// name_to_handle_at(2) of "/" (the first half of the "shocker" escape).
pub fn name_to_handle_root() -> Answer<()> {
    // struct file_handle: handle_bytes, handle_type, then up to 128 bytes.
    let mut handle = [0u32; 2 + 32];
    handle[0] = 128;
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `handle` is a struct file_handle with room for the 128 bytes it announces;
    // `mount_id` is a valid int.
    int(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            handle.as_mut_ptr(),
            &raw mut mount_id,
            0i32,
        )
    })
    .map(drop)
}

/// quotactl(Q_GETINFO, user quotas) on `device` (read only).
pub fn quotactl_getinfo(device: &str) -> Answer<()> {
    let dev = c(device)?;
    let mut info = [0u8; 64];
    // QCMD(Q_GETINFO, USRQUOTA): (0x800005 << 8) | 0.
    let cmd = (0x0080_0005u32 << 8) as libc::c_int;
    // SAFETY: a NUL-terminated path and a buffer larger than struct if_dqinfo.
    int(unsafe {
        libc::syscall(
            libc::SYS_quotactl,
            cmd,
            dev.as_ptr(),
            0i32,
            info.as_mut_ptr(),
        )
    })
    .map(drop)
}

/// setrlimit(2) of `resource` to `value`, soft and hard.
pub fn setrlimit(resource: libc::__rlimit_resource_t, value: u64) -> Answer<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `lim` is a valid struct rlimit.
    int(unsafe { libc::setrlimit(resource, &lim) }.into()).map(drop)
}

/// getrlimit(2): the hard limit of `resource`.
pub fn hard_rlimit(resource: libc::__rlimit_resource_t) -> Answer<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid struct rlimit the kernel fills.
    int(unsafe { libc::getrlimit(resource, &mut lim) }.into())?;
    Ok(lim.rlim_max)
}

/// getrlimit(2): the soft limit.
pub fn soft_rlimit(resource: libc::__rlimit_resource_t) -> Answer<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid struct rlimit the kernel fills.
    int(unsafe { libc::getrlimit(resource, &mut lim) }.into())?;
    Ok(lim.rlim_cur)
}

/// ioctl(ns, request) on a namespace file (NS_GET_USERNS, NS_GET_PARENT): a descriptor
/// of the related namespace.
pub fn ns_ioctl(ns: &OwnedFd, request: libc::c_ulong) -> Answer<OwnedFd> {
    // SAFETY: these nsfs requests take no argument.
    fd(unsafe { libc::ioctl(ns.as_raw_fd(), request) }.into())
}

/// inotify_add_watch(2) of `path` with `mask`.
pub fn inotify_add_watch(fd: &OwnedFd, path: &str, mask: u32) -> Answer<()> {
    let p = c(path)?;
    // SAFETY: a NUL-terminated path; the watch belongs to our own inotify instance.
    int(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), p.as_ptr(), mask) }.into()).map(drop)
}

/// The bytes of events waiting on an inotify instance (FIONREAD), without blocking.
pub fn inotify_pending(fd: &OwnedFd) -> Answer<libc::c_int> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the valid pointer.
    int(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &raw mut n) }.into())?;
    Ok(n)
}

/// Reads and drops every event waiting on an inotify instance (without blocking).
pub fn inotify_drain(fd: &OwnedFd) -> Answer<()> {
    let mut buf = [0u8; 4096];
    while inotify_pending(fd)? > 0 {
        // SAFETY: reads into a buffer of ours, at most its length; events are waiting, so
        // the read does not block.
        int(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } as _)?;
    }
    Ok(())
}

/// flock(2) on an open file.
pub fn flock(file: &OwnedFd, how: libc::c_int) -> Answer<()> {
    // SAFETY: plain integer arguments on a descriptor of ours.
    int(unsafe { libc::flock(file.as_raw_fd(), how) }.into()).map(drop)
}

/// The anonymous-inode files a room can make: eventfd, epoll, timerfd, signalfd and
/// inotify (each a file of the kernel's one anonymous inode), with their names.
pub fn anon_inode_files() -> Vec<(&'static str, Answer<OwnedFd>)> {
    // SAFETY: an all-zero sigset_t is a valid (empty) set for signalfd.
    let empty: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: plain system call with constant arguments.
    let event = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    // SAFETY: as above.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    // SAFETY: as above.
    let timer = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
    // SAFETY: signalfd reads the valid set above.
    let signal = unsafe { libc::signalfd(-1, &empty, libc::SFD_CLOEXEC) };
    vec![
        ("eventfd", fd(event.into())),
        ("epoll", fd(epoll.into())),
        ("timerfd", fd(timer.into())),
        ("signalfd", fd(signal.into())),
        ("inotify", inotify_init()),
    ]
}

/// The device and inode number of an open file.
pub fn inode_of(file: &OwnedFd) -> Answer<(u64, u64)> {
    // SAFETY: an all-zero stat is a valid buffer; fstat fills it.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat for the call.
    int(unsafe { libc::fstat(file.as_raw_fd(), &mut st) }.into())?;
    Ok((st.st_dev, st.st_ino))
}

/// F_OFD_GETLK for a whole-file lock of `kind` (F_RDLCK, F_WRLCK): the first lock in the
/// way as (type, start, length, pid), or F_UNLCK when none is.
pub fn ofd_getlk(file: &OwnedFd, kind: libc::c_int) -> Answer<(i32, i64, i64, i32)> {
    // SAFETY: an all-zero flock is a valid request (SEEK_SET, start 0, length 0: whole).
    let mut l: libc::flock = unsafe { core::mem::zeroed() };
    l.l_type = kind as libc::c_short;
    // SAFETY: F_OFD_GETLK reads and fills the valid struct.
    int(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut l) }.into())?;
    Ok((l.l_type.into(), l.l_start, l.l_len, l.l_pid))
}

/// F_OFD_SETLK of a whole-file lock of `kind` (F_RDLCK, F_WRLCK, F_UNLCK), not waiting.
pub fn ofd_setlk(file: &OwnedFd, kind: libc::c_int) -> Answer<()> {
    ofd_setlk_at(file, kind, 0, 0)
}

/// F_OFD_SETLK of a lock of `kind` on `len` bytes at `start` (length 0: to the end).
pub fn ofd_setlk_at(file: &OwnedFd, kind: libc::c_int, start: i64, len: i64) -> Answer<()> {
    // SAFETY: as in ofd_getlk.
    let mut l: libc::flock = unsafe { core::mem::zeroed() };
    l.l_type = kind as libc::c_short;
    (l.l_start, l.l_len) = (start, len);
    // SAFETY: F_OFD_SETLK reads the valid struct.
    int(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &l) }.into()).map(drop)
}

/// Forks a child that runs `child` with the write end of a fresh pipe and exits with what
/// it returns; the child's pid and the pipe's read end (at its end once every write end
/// is closed: the child's, at the latest with its exit).
fn fork_with_pipe(child: impl FnOnce(RawFd) -> i32) -> Answer<(i32, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }.into())?;
    let [r, w] = fds;
    // SAFETY: the pipe's read end, just made and owned by nobody else.
    let r = unsafe { OwnedFd::from_raw_fd(r) };
    // SAFETY: the probe has one thread; the child runs `child` and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // The child's copy of the read end, which it does not use.
        drop(r);
        let code = child(w);
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) }
    }
    let fork_errno = errno();
    // SAFETY: the parent's write end, which it does not use.
    unsafe { libc::close(w) };
    if pid < 0 {
        return Err(fork_errno);
    }
    Ok((pid, r))
}

/// Runs `work` in a forked child that reports numbers to the parent through a pipe as it
/// goes (so a child the kernel kills halfway has still told how far it got); the last
/// number it reported, and how it ended (`work`'s return value is the child's exit status:
/// 0 is [`Ended::Succeeded`]).
pub fn in_child_reporting(
    work: impl FnOnce(&mut dyn FnMut(u64)) -> i32,
) -> Answer<(Option<u64>, Ended)> {
    let (pid, r) = fork_with_pipe(|w| {
        let mut report = |n: u64| {
            let b = n.to_ne_bytes();
            // SAFETY: writes the valid 8-byte buffer (a pipe write of 8 bytes is atomic).
            unsafe { libc::write(w, b.as_ptr().cast(), b.len()) };
        };
        work(&mut report)
    })?;
    let mut last = None;
    let mut b = [0u8; 8];
    // SAFETY: reads into the valid 8-byte buffer; the reports are whole 8-byte writes.
    while unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) } == 8 {
        last = Some(u64::from_ne_bytes(b));
    }
    drop(r);
    let mut status = 0;
    // SAFETY: reaps our own child; `status` is a valid int.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let ended = if libc::WIFSIGNALED(status) {
        Ended::Killed(libc::WTERMSIG(status))
    } else {
        match libc::WEXITSTATUS(status) {
            0 => Ended::Succeeded,
            e => Ended::Failed(e),
        }
    };
    Ok((last, ended))
}

/// A NETLINK_ROUTE socket with the largest receive buffer it may have (SO_RCVBUF is
/// capped by net.core.rmem_max).
pub fn netlink_route_socket() -> Answer<OwnedFd> {
    let sock = socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 0)?;
    let big: libc::c_int = 1 << 30;
    // SAFETY: SO_RCVBUF reads one int from the valid pointer.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const big).cast(),
            core::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Ok(sock)
}

/// Sends `n` RTM_GETLINK requests (for the loopback, index 1) on a NETLINK_ROUTE socket;
/// the kernel queues one reply for each on the socket until its receive buffer is full.
pub fn netlink_getlink(sock: &OwnedFd, n: usize) -> Answer<()> {
    // struct nlmsghdr (16 bytes) + struct ifinfomsg (16 bytes).
    let mut req = [0u8; 32];
    req[0..4].copy_from_slice(&32u32.to_ne_bytes());
    req[4..6].copy_from_slice(&(libc::RTM_GETLINK).to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[20..24].copy_from_slice(&1i32.to_ne_bytes());
    // SAFETY: an all-zero sockaddr_nl addresses the kernel.
    let mut to: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    for _ in 0..n {
        // SAFETY: the request and the address are valid for their lengths.
        int(unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&raw const to).cast(),
                core::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        } as libc::c_long)?;
    }
    Ok(())
}

/// The bytes queued for reading on a socket, as the kernel counts them against its
/// receive buffer (SO_MEMINFO, SK_MEMINFO_RMEM_ALLOC).
pub fn socket_rmem(sock: &OwnedFd) -> Answer<u64> {
    let mut info = [0u32; 9];
    let mut len = core::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: SO_MEMINFO writes at most `len` bytes into the valid array.
    int(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    }
    .into())?;
    Ok(u64::from(info[0]))
}

/// Forks a child that takes one thing with `take` up to `most` times (or until `take`
/// fails) and keeps everything it took until it is killed; returns its pid, how many it
/// took and the errno that stopped it (0: it took all `most`).
pub fn holder(most: u64, take: fn() -> Answer<()>) -> Answer<(i32, u64, Errno)> {
    let (pid, r) = fork_with_pipe(|w| {
        let (mut n, mut stop) = (0u64, 0);
        while n < most {
            if let Err(e) = take() {
                stop = e;
                break;
            }
            n += 1;
        }
        let b = (u128::from(n) | (u128::from(stop.unsigned_abs()) << 64)).to_ne_bytes();
        // SAFETY: writes the valid 16-byte buffer (a pipe write of 16 bytes is atomic).
        unsafe { libc::write(w, b.as_ptr().cast(), b.len()) };
        // SAFETY: our write end; then wait to be killed, holding everything taken.
        unsafe { libc::close(w) };
        loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        }
    })?;
    let mut b = [0u8; 16];
    // SAFETY: reads into the valid 16-byte buffer; the report is one 16-byte write.
    let got = unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
    drop(r);
    if got != 16 {
        return Ok((pid, 0, libc::EIO));
    }
    let report = u128::from_ne_bytes(b);
    let n = u64::try_from(report & u128::from(u64::MAX)).unwrap_or(0);
    let stop = Errno::try_from(report >> 64).unwrap_or(libc::EIO);
    Ok((pid, n, stop))
}

/// For [`holder`]: opens /dev/null and keeps the descriptor.
pub fn keep_a_file() -> Answer<()> {
    // SAFETY: a valid NUL-terminated path; the descriptor is kept on purpose.
    int(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) }.into()).map(drop)
}

/// For [`holder`]: starts a thread (64 KiB of stack) that sleeps for good.
pub fn keep_a_thread() -> Answer<()> {
    std::thread::Builder::new()
        .stack_size(64 << 10)
        .spawn(|| loop {
            std::thread::park();
        })
        .map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EAGAIN))
}

/// How a crashing child ended: its signal, and whether the kernel took a core dump of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash {
    pub signal: i32,
    pub dumped: bool,
}

/// Forks a child that first tries to set its core limit to `core` (soft and hard; a
/// failure is not fatal: what the kernel then does is the answer), names itself `comm` and
/// dies of SIGSEGV in `dir` (a core file would land there); how it ended.
pub fn crash_in_child(core: u64, comm: &str, dir: &str) -> Answer<Crash> {
    let name = c(comm)?;
    let dir = c(dir)?;
    // SAFETY: the probe has one thread; the child makes a few system calls and dies.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let lim = libc::rlimit {
            rlim_cur: core,
            rlim_max: core,
        };
        // SAFETY: a valid struct rlimit; acts on this child alone.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) };
        // SAFETY: integer arguments; acts on this child alone.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
        // SAFETY: a NUL-terminated name the kernel copies (at most 16 bytes).
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
        // SAFETY: a NUL-terminated path.
        unsafe { libc::chdir(dir.as_ptr()) };
        // SAFETY: restores the default action of SIGSEGV in this child.
        unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        // SAFETY: an integer call; the signal ends this child.
        unsafe { libc::kill(me, libc::SIGSEGV) };
        // SAFETY: ends the child (if the signal did not) without the parent's exit handlers.
        unsafe { libc::_exit(0) }
    }
    if pid < 0 {
        return Err(errno());
    }
    let mut status = 0;
    // SAFETY: reaps our own child; `status` is a valid int.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !libc::WIFSIGNALED(status) {
        return Err(libc::ECHILD);
    }
    Ok(Crash {
        signal: libc::WTERMSIG(status),
        dumped: libc::WCOREDUMP(status),
    })
}

/// Whether this process could set its core limit to `value` (soft and hard), tried in a
/// child so that the probe's own limit stays as it was.
pub fn probe_core_limit(value: u64) -> Answer<()> {
    // SAFETY: the probe has one thread; the child makes one system call and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let lim = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: a valid struct rlimit; acts on this child alone.
        let code = if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) } == 0 {
            0
        } else {
            errno().clamp(1, 250)
        };
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) }
    }
    if pid < 0 {
        return Err(errno());
    }
    let mut status = 0;
    // SAFETY: reaps our own child; `status` is a valid int.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        e => Err(e),
    }
}
