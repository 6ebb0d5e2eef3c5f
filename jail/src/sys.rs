// SPDX-License-Identifier: GPL-3.0-or-later
//! Every raw system call of the jail, each `unsafe` block with its reason.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(op: &'static str, ret: libc::c_int) -> Result<libc::c_int> {
    if ret < 0 {
        Err(Error::Sys { op, errno: errno() })
    } else {
        Ok(ret)
    }
}

/// A path as a C string (paths come from our own command line: NUL is a usage error).
pub fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Usage(format!("path {} contains NUL", path.display())))
}

fn check_path(op: &'static str, path: &Path, ret: libc::c_int) -> Result<()> {
    if ret < 0 {
        Err(Error::Path {
            op,
            path: path.display().to_string(),
            errno: errno(),
        })
    } else {
        Ok(())
    }
}

/// unshare(2).
pub fn unshare(flags: libc::c_int) -> Result<()> {
    // SAFETY: unshare only changes this process's namespace membership.
    check("unshare namespaces", unsafe { libc::unshare(flags) }).map(drop)
}

/// sethostname(2) (in the jail's own UTS namespace).
pub fn sethostname(name: &str) -> Result<()> {
    // SAFETY: the pointer/length pair describes `name`'s bytes, valid for the call.
    let ret = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    check("sethostname", ret).map(drop)
}

/// mount(2); `source` and `fstype` may be absent.
pub fn mount(
    op: &'static str,
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<()> {
    let src = source.map(cpath).transpose()?;
    let tgt = cpath(target)?;
    let ptr = |c: Option<&CStr>| c.map_or(core::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is a NUL-terminated string (or NULL) that outlives the call.
    let ret = unsafe {
        libc::mount(
            ptr(src.as_deref()),
            tgt.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    };
    check_path(op, target, ret)
}

/// umount2(2).
pub fn umount(target: &Path, flags: libc::c_int) -> Result<()> {
    let t = cpath(target)?;
    // SAFETY: `t` is NUL-terminated and outlives the call.
    check_path("umount", target, unsafe {
        libc::umount2(t.as_ptr(), flags)
    })
}

/// pivot_root(2) with new_root == put_old (the old root ends up on top, to be detached).
pub fn pivot_root_here() -> Result<()> {
    // SAFETY: both arguments are the static string "."; the syscall only changes mounts.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
    check("pivot_root", i32::try_from(ret).unwrap_or(-1)).map(drop)
}

/// chdir(2).
pub fn chdir(path: &Path) -> Result<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is NUL-terminated and outlives the call.
    check_path("chdir", path, unsafe { libc::chdir(p.as_ptr()) })
}

/// mknod(2) of a character device.
pub fn mknod_char(path: &Path, mode: u32, major: u32, minor: u32) -> Result<()> {
    let p = cpath(path)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: `p` is NUL-terminated and outlives the call.
    let ret = unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | mode, dev) };
    check_path("mknod", path, ret)
}

/// chown(2).
pub fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is NUL-terminated and outlives the call.
    check_path("chown", path, unsafe { libc::chown(p.as_ptr(), uid, gid) })
}

/// chmod(2) (the umask does not apply).
pub fn chmod(path: &Path, mode: u32) -> Result<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is NUL-terminated and outlives the call.
    check_path("chmod", path, unsafe { libc::chmod(p.as_ptr(), mode) })
}

/// statfs(2) f_type of the file system holding `path`.
pub fn fs_type(path: &Path) -> Result<libc::c_long> {
    let p = cpath(path)?;
    let mut st = core::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `p` is NUL-terminated; `st` is a valid, writable statfs buffer.
    check_path("statfs", path, unsafe {
        libc::statfs(p.as_ptr(), st.as_mut_ptr())
    })?;
    // SAFETY: statfs succeeded and filled the (zeroed) buffer.
    Ok(unsafe { st.assume_init() }.f_type)
}

/// setrlimit(2), soft = hard.
pub fn setrlimit(resource: libc::__rlimit_resource_t, value: u64) -> Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `lim` is a valid rlimit that outlives the call.
    check("setrlimit", unsafe { libc::setrlimit(resource, &lim) }).map(drop)
}

/// The highest capability number the kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// prctl(PR_CAPBSET_DROP, cap); EINVAL (a capability this kernel lacks) is fine.
pub fn capbset_drop(cap: u32) -> Result<()> {
    // SAFETY: prctl with integer arguments only changes this process's bounding set.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    match check("drop a capability from the bounding set", ret) {
        Err(Error::Sys { errno, .. }) if errno == libc::EINVAL => Ok(()),
        other => other.map(drop),
    }
}

/// prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL).
pub fn ambient_clear() -> Result<()> {
    // SAFETY: prctl with integer arguments only changes this process's ambient set.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    check("clear ambient capabilities", ret).map(drop)
}

/// setgroups(0, NULL).
pub fn setgroups_none() -> Result<()> {
    // SAFETY: an empty list: the kernel reads no memory.
    check("setgroups", unsafe {
        libc::setgroups(0, core::ptr::null())
    })
    .map(drop)
}

/// setresgid(gid, gid, gid).
pub fn setresgid(gid: u32) -> Result<()> {
    // SAFETY: plain integer arguments.
    check("setresgid", unsafe { libc::setresgid(gid, gid, gid) }).map(drop)
}

/// setresuid(uid, uid, uid).
pub fn setresuid(uid: u32) -> Result<()> {
    // SAFETY: plain integer arguments.
    check("setresuid", unsafe { libc::setresuid(uid, uid, uid) }).map(drop)
}

/// umask(2): files and sockets the program creates are its own alone.
pub fn umask_private() {
    // SAFETY: umask only sets this process's file creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
}

/// prctl(PR_SET_NO_NEW_PRIVS, 1).
pub fn no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments only sets this process's flag.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check("set no_new_privs", ret).map(drop)
}

/// True when any capability is still effective, permitted or inheritable.
pub fn capabilities_held() -> Result<bool> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut head = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: `head` and `data` have the layout capget(2) expects for version 3 (two data
    // words) and outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            (&raw mut head).cast::<libc::c_void>(),
            data.as_mut_ptr().cast::<libc::c_void>(),
        )
    };
    check("capget", i32::try_from(ret).unwrap_or(-1))?;
    Ok(data
        .iter()
        .any(|d| d.effective | d.permitted | d.inheritable != 0))
}

/// getpid(2).
pub fn getpid() -> i32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getpid() }
}

/// fork(2); `Ok(0)` in the child.
pub fn fork() -> Result<i32> {
    // SAFETY: the jail is single-threaded, so the child may run any code.
    check("fork", unsafe { libc::fork() })
}

/// waitpid(pid, 0) until it ends; the exit code the shell would show.
pub fn wait_exit_code(pid: i32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int for the call.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            break;
        }
        if ret < 0 && errno() != libc::EINTR {
            return 1;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// prctl(PR_SET_PDEATHSIG, SIGKILL): die with the parent.
pub fn die_with_parent() -> Result<()> {
    // SAFETY: prctl with integer arguments only sets this process's death signal.
    let ret = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    check("set the parent-death signal", ret).map(drop)
}

/// execve(2) with an empty environment; returns only on failure.
pub fn exec(program: &CStr, argv: &[CString]) -> Result<core::convert::Infallible> {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(core::ptr::null());
    let envp: [*const libc::c_char; 1] = [core::ptr::null()];
    // SAFETY: `program` and every argv entry are NUL-terminated strings alive for the call;
    // both arrays end with NULL.
    unsafe { libc::execve(program.as_ptr(), ptrs.as_ptr(), envp.as_ptr()) };
    Err(Error::Path {
        op: "exec",
        path: program.to_string_lossy().into_owned(),
        errno: errno(),
    })
}

/// ptrace(PTRACE_ATTACH, pid) (used by the probe to show it fails).
pub fn ptrace_attach(pid: i32) -> Result<()> {
    // SAFETY: PTRACE_ATTACH takes no pointers.
    let ret = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0usize, 0usize) };
    check("ptrace attach", i32::try_from(ret).unwrap_or(-1)).map(drop)
}

/// chroot(2).
pub fn chroot(path: &Path) -> Result<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is NUL-terminated and outlives the call.
    check_path("chroot", path, unsafe { libc::chroot(p.as_ptr()) })
}

/// kill(2).
pub fn kill(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: plain integer arguments.
    check("kill", unsafe { libc::kill(pid, sig) }).map(drop)
}
