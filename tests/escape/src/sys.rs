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
