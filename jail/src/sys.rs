// SPDX-License-Identifier: GPL-3.0-or-later
//! Every raw system call of the jail, each `unsafe` block with its reason.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

pub mod relay_io;
pub mod tap;
pub mod title;

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

/// setns(2): joins the namespace `fd` refers to (of kind `nstype`, e.g. CLONE_NEWTIME).
pub fn setns(fd: &OwnedFd, nstype: libc::c_int) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setns only changes this process's namespace membership; `fd` is open.
    check("setns", unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(drop)
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

/// setresgid(-1, gid, -1) then setresuid(-1, uid, -1): only the effective ids change
/// (the real and saved ones stay, so permitted capabilities do too).
pub fn set_effective_ids(uid: u32, gid: u32) -> Result<()> {
    let keep = libc::uid_t::MAX;
    // SAFETY: plain integer arguments (-1: unchanged).
    check("setresgid", unsafe { libc::setresgid(keep, gid, keep) })?;
    // SAFETY: as above.
    check("setresuid", unsafe { libc::setresuid(keep, uid, keep) }).map(drop)
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

/// getppid(2): the parent's pid in this PID namespace (0 outside it).
pub fn getppid() -> i32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getppid() }
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

/// The read end of a pipe whose only write end the jail's parent holds (`watch_parent`);
/// -1 when there is none.
static PARENT_WATCH: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(-1);

/// From now on [`die_with_parent`] also checks that whoever holds the write end of the
/// pipe `read_end` is alive (it is closed on exec).
pub fn watch_parent(read_end: OwnedFd) {
    use std::os::fd::IntoRawFd;
    PARENT_WATCH.store(
        read_end.into_raw_fd(),
        core::sync::atomic::Ordering::Relaxed,
    );
}

/// Names this process `name` in /proc (its `comm`: PR_SET_NAME, at most 15 bytes shown).
pub fn set_process_name(name: &core::ffi::CStr) -> Result<()> {
    // SAFETY: PR_SET_NAME reads the NUL-terminated string `name`, valid for the call, and
    // copies at most 16 bytes of it.
    let ret = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
    check("set the process name", ret).map(drop)
}

/// The descriptor [`watch_parent`] was given, if any (a child that closes the others
/// keeps it, or [`die_with_parent`] takes the parent for dead).
pub fn parent_watch_fd() -> Option<libc::c_int> {
    let fd = PARENT_WATCH.load(core::sync::atomic::Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

/// prctl(PR_SET_PDEATHSIG, SIGKILL): die with the parent. The kernel forgets it at every
/// change of the effective or filesystem uid or gid (setresuid, a new user namespace's
/// root): call it again after each. A parent that died before it was set is seen through
/// the pipe of [`watch_parent`] (its write end closed) and this process exits at once.
pub fn die_with_parent() -> Result<()> {
    // SAFETY: prctl with integer arguments only sets this process's death signal.
    let ret = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    check("set the parent-death signal", ret)?;
    let fd = PARENT_WATCH.load(core::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call; no wait (timeout 0).
        let ret = unsafe { libc::poll(&mut p, 1, 0) };
        // Nothing is ever written: readable or hung up means the write end is closed.
        if ret != 0 {
            exit_now(1);
        }
    }
    Ok(())
}

/// pipe2(O_CLOEXEC): (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe2(2) expects.
    check("pipe", unsafe {
        libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC)
    })?;
    let [r, w] = fds;
    // SAFETY: pipe2 just returned this descriptor; it is owned only here.
    let r = unsafe { OwnedFd::from_raw_fd(r) };
    // SAFETY: as above, for the write end.
    let w = unsafe { OwnedFd::from_raw_fd(w) };
    Ok((r, w))
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

/// The extended attribute that marks a file once given to a microVM as a writable disk:
/// its guest wrote the file's blocks as it liked, so the host kernel never mounts what it
/// holds (see [`crate::volume`]). In the `trusted` namespace: only host root
/// (CAP_SYS_ADMIN in the host's user namespace) reads, sets or removes it, never a room.
pub const GUEST_DISK: &CStr = c"trusted.anchor.guest-disk";

/// fsetxattr(2): [`GUEST_DISK`] on the open file `fd` (`path` for the error).
pub fn mark_guest_disk(fd: &impl AsRawFd, path: &Path) -> Result<()> {
    let value = b"1";
    // SAFETY: `fd` is open, the name is NUL-terminated and the value's pointer/length
    // pair describes `value`; the kernel only reads them during the call.
    let ret = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            GUEST_DISK.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check_path(
        "mark as a microVM's disk (xattr trusted.anchor.guest-disk)",
        path,
        ret,
    )
}

/// Whether the open file `fd` carries [`GUEST_DISK`] (`path` for the error).
pub fn is_guest_disk(fd: &OwnedFd, path: &Path) -> Result<bool> {
    // SAFETY: `fd` is open and the name NUL-terminated; a NULL buffer of size 0 asks
    // only for the value's size, so the kernel writes nothing.
    let ret = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            GUEST_DISK.as_ptr(),
            core::ptr::null_mut(),
            0,
        )
    };
    match (ret, errno()) {
        (0.., _) => Ok(true),
        (_, libc::ENODATA) => Ok(false),
        (_, errno) => Err(Error::Path {
            op: "read the xattr trusted.anchor.guest-disk of",
            path: path.display().to_string(),
            errno,
        }),
    }
}

/// A read-only loop device for `image`, configured with LOOP_CONFIGURE (autoclear: it
/// comes apart when its last user, the room's mount, goes away). Returns the device's
/// open descriptor (to keep it until the mount holds it) and its path.
pub fn loop_attach_readonly(image: &Path) -> Result<(OwnedFd, std::path::PathBuf)> {
    loop_attach(image, false)
}

/// [`loop_attach_readonly`], writable when `writable`.
fn loop_attach(image: &Path, writable: bool) -> Result<(OwnedFd, std::path::PathBuf)> {
    let mode = if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    };
    // A writable backing file is never reached through a symlink.
    let nofollow = if writable { libc::O_NOFOLLOW } else { 0 };
    let backing = open_path(image, mode | nofollow)?;
    loop_attach_open(&backing, image, writable)
}

/// Attaches the open file `backing` (opened from `image`, read-write when `writable`) to
/// a free loop device (autoclear): the device and its path. The device holds `backing`'s
/// open file description, and with it any `flock` taken on it (a room's vault volume),
/// until it is cleared.
pub fn loop_attach_open(
    backing: &impl AsRawFd,
    image: &Path,
    writable: bool,
) -> Result<(OwnedFd, std::path::PathBuf)> {
    const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
    use crate::image::{LO_FLAGS_AUTOCLEAR, LO_FLAGS_READ_ONLY};
    let (mode, read_only) = if writable {
        (libc::O_RDWR, 0)
    } else {
        (libc::O_RDONLY, LO_FLAGS_READ_ONLY)
    };
    let control = open_path(Path::new("/dev/loop-control"), libc::O_RDWR)?;
    let mut name = [0u8; 64];
    for (d, s) in name
        .iter_mut()
        .zip(image.as_os_str().as_bytes().iter().take(63))
    {
        *d = *s;
    }
    // Another room may take the free device between the query and the configuration:
    // then ask again.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        let n = check("find a free loop device (/dev/loop-control)", n)?;
        let path = std::path::PathBuf::from(format!("/dev/loop{n}"));
        let dev = open_path(&path, mode)?;
        let cfg = LoopConfig {
            fd: u32::try_from(backing.as_raw_fd()).unwrap_or(u32::MAX),
            block_size: 0,
            info: LoopInfo64 {
                lo_flags: read_only | LO_FLAGS_AUTOCLEAR,
                lo_file_name: name,
                ..LoopInfo64::default()
            },
            reserved: [0; 8],
        };
        // SAFETY: `cfg` has the kernel's struct loop_config layout and outlives the call;
        // the kernel only reads it.
        let ret = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &raw const cfg) };
        match check_path("configure loop device", &path, ret) {
            Ok(()) => return Ok((dev, path)),
            Err(Error::Path { errno, .. }) if errno == libc::EBUSY => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Unsupported(
        "no free loop device after 16 tries (other rooms took them)",
    ))
}

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

impl Default for LoopInfo64 {
    fn default() -> Self {
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        }
    }
}

/// `struct loop_config` (linux/loop.h, LOOP_CONFIGURE).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// open(2) of `path` with `flags` | O_CLOEXEC.
/// Takes a shared `flock` on `fd` without waiting: `false` when another open file
/// description holds it exclusively.
pub fn try_lock_shared(fd: &impl AsRawFd, path: &Path) -> Result<bool> {
    loop {
        // SAFETY: flock on a descriptor the caller owns; no memory is passed.
        if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            errno => {
                return Err(Error::Path {
                    op: "lock",
                    path: path.display().to_string(),
                    errno: errno.unwrap_or(libc::EIO),
                })
            }
        }
    }
}

pub fn open_path(path: &Path, flags: libc::c_int) -> Result<OwnedFd> {
    let p = cpath(path)?;
    // SAFETY: `p` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) };
    check_path("open", path, fd)?;
    // SAFETY: `fd` was just returned by open, is valid and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Brings the network interface `name` up (SIOCSIFFLAGS |= IFF_UP) in this network
/// namespace.
pub fn interface_up(name: &str) -> Result<()> {
    #[repr(C)]
    struct IfreqFlags {
        name: [u8; 16],
        flags: libc::c_short,
        pad: [u8; 22],
    }
    let mut req = IfreqFlags {
        name: [0; 16],
        flags: 0,
        pad: [0; 22],
    };
    for (d, s) in req.name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    // Any socket reaches the interface ioctls; a Unix one needs no network protocol.
    // SAFETY: plain socket(2) call; the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let fd = check("socket for interface control", fd)?;
    // SAFETY: `fd` was just returned by socket and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `req` has the layout of struct ifreq (name, then the flags member of the
    // union, padded to 40 bytes) and outlives both calls.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req) };
    check("read a network interface's flags", ret)?;
    req.flags |= libc::IFF_UP as libc::c_short;
    // SAFETY: as above.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &raw const req) };
    check("bring a network interface up", ret).map(drop)
}

/// prctl(PR_SET_SECUREBITS, bits).
pub fn set_securebits(bits: libc::c_ulong) -> Result<()> {
    // SAFETY: prctl with integer arguments only changes this process's securebits.
    let ret = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) };
    check("lock the securebits", ret).map(drop)
}

/// capset(2): no effective, permitted or inheritable capability.
pub fn capset_none() -> Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    let mut head = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [0u32; 6];
    // SAFETY: `head` and `data` (two zeroed {effective, permitted, inheritable} words)
    // have the layout capset(2) expects for version 3 and outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            (&raw mut head).cast::<libc::c_void>(),
            data.as_ptr().cast::<libc::c_void>(),
        )
    };
    check("drop every capability", i32::try_from(ret).unwrap_or(-1)).map(drop)
}

/// The classic BPF program `prog` (raw little-endian `struct sock_filter` records, as the
/// build scripts store them) as the kernel's records; a trailing partial record is left out.
pub fn sock_filters(prog: &[u8]) -> Vec<libc::sock_filter> {
    prog.chunks_exact(8)
        .map(|c| {
            let b = |i: usize| c.get(i).copied().unwrap_or(0);
            libc::sock_filter {
                code: u16::from_le_bytes([b(0), b(1)]),
                jt: b(2),
                jf: b(3),
                k: u32::from_le_bytes([b(4), b(5), b(6), b(7)]),
            }
        })
        .collect()
}

/// Installs the classic BPF program `prog` (raw little-endian `struct sock_filter`
/// records) as a seccomp filter of this thread; no_new_privs must be set.
pub fn seccomp_install(op: &'static str, prog: &[u8]) -> Result<()> {
    if prog.is_empty() || prog.len() % 8 != 0 {
        return Err(Error::Unsupported("an embedded seccomp filter is corrupt"));
    }
    let filters = sock_filters(prog);
    let fprog = libc::sock_fprog {
        len: u16::try_from(filters.len()).unwrap_or(u16::MAX),
        filter: filters.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `filters`, which outlives the call; the kernel copies
    // the program.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &raw const fprog,
        )
    };
    check(op, i32::try_from(ret).unwrap_or(-1)).map(drop)
}

/// close_range(first, ~0, CLOSE_RANGE_CLOEXEC): every descriptor from `first` on closes
/// at the next exec.
pub fn cloexec_from(first: u32) -> Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes flags of this process's descriptors.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    check(
        "mark descriptors close-on-exec",
        i32::try_from(ret).unwrap_or(-1),
    )
    .map(drop)
}

/// Whether `fd` is an open descriptor of this process (fcntl F_GETFD).
pub fn is_open(fd: libc::c_int) -> bool {
    // SAFETY: F_GETFD only reads this descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// dup(2) with close-on-exec.
pub fn dup_cloexec(fd: libc::c_int) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only adds a descriptor to this process's table.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    let new = check("duplicate a descriptor", new)?;
    // SAFETY: `new` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// dup2(2).
pub fn dup2(from: libc::c_int, to: libc::c_int) -> Result<()> {
    // SAFETY: dup2 only manipulates this process's descriptor table.
    check("dup2", unsafe { libc::dup2(from, to) }).map(drop)
}

/// Whole seconds of `clock` (0 if it cannot be read).
pub fn clock_secs(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    let ret = unsafe { libc::clock_gettime(clock, &mut ts) };
    if ret == 0 {
        ts.tv_sec
    } else {
        0
    }
}

/// socketpair(AF_UNIX, SOCK_STREAM) with close-on-exec on both ends.
pub fn socketpair_stream() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(libc::SOCK_STREAM, "socketpair for the room's network")
}

/// socketpair(AF_UNIX, `kind`) with close-on-exec on both ends; `op` names it in errors.
pub fn socketpair(kind: libc::c_int, op: &'static str) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a writable array of two ints, as socketpair(2) expects.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    check(op, ret)?;
    let [a, b] = fds;
    // SAFETY: socketpair just returned this descriptor; it is owned only here.
    let a = unsafe { OwnedFd::from_raw_fd(a) };
    // SAFETY: as above, for the other end.
    let b = unsafe { OwnedFd::from_raw_fd(b) };
    Ok((a, b))
}

/// A NETLINK_ROUTE socket of this network namespace (close-on-exec), subscribed to its
/// IPv4 address and route changes: the VMM follows the anchor host's own addresses
/// through it (`--net-host-fd`).
pub fn route_watch_socket() -> Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    check("netlink socket for the host's addresses", fd)?;
    // SAFETY: socket just returned this descriptor; it is owned only here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; all zeros is a valid value.
    let mut sa: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa.nl_groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV4_ROUTE) as u32;
    let len = core::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `sa` is a valid sockaddr_nl that outlives the call, and `len` is its size.
    let ret = unsafe { libc::bind(fd, core::ptr::from_ref(&sa).cast(), len) };
    check("subscribe to the host's address changes", ret)?;
    Ok(owned)
}

/// Clears close-on-exec on `fd` (it is handed to the next program).
pub fn set_inheritable(fd: libc::c_int) -> Result<()> {
    // SAFETY: F_SETFD with integer flags only changes this descriptor's flags.
    check("keep a descriptor across exec", unsafe {
        libc::fcntl(fd, libc::F_SETFD, 0)
    })
    .map(drop)
}

/// _exit(2): ends a forked child at once (no destructors, no atexit handlers).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of this process.
    unsafe { libc::_exit(code) }
}

/// openat(2) of `name` under the directory `dir` with `flags` | O_CLOEXEC (symlinks not
/// followed in the last component).
pub fn open_at(dir: &OwnedFd, name: &CStr, flags: libc::c_int) -> Result<OwnedFd> {
    // SAFETY: `dir` is an open descriptor; `name` is NUL-terminated and outlives the call.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(Error::Path {
            op: "open",
            path: name.to_string_lossy().into_owned(),
            errno: errno(),
        });
    }
    // SAFETY: `fd` was just returned by openat, is valid and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// EXT4_IOC_RESIZE_FS (`_IOW('f', 16, __u64)`): grows the ext filesystem mounted at `dir`
/// online to `blocks` of its blocks. The ext4 driver does it in journaled steps, each
/// leaving a consistent filesystem: cut short, it is smaller, and growing it again goes on.
pub fn ext4_grow(dir: &Path, blocks: u64) -> Result<()> {
    const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;
    let fd = open_path(dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW)?;
    // SAFETY: `fd` is open; the argument points to a u64 that outlives the call and the
    // kernel only reads it.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), EXT4_IOC_RESIZE_FS, &blocks) };
    check_path("grow the file system mounted on", dir, ret)
}

/// close_range(first, last, 0).
fn close_range(first: libc::c_uint, last: libc::c_uint) -> Result<()> {
    // SAFETY: closes descriptors of this process only; that nothing refers to them
    // afterwards is close_all_except's contract, its only caller.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    if ret != 0 {
        return Err(Error::Sys {
            op: "close the descriptors not needed",
            errno: errno(),
        });
    }
    Ok(())
}

/// Closes every descriptor of this process but `keep`.
///
/// # Safety
/// Whatever else refers to a closed one (an `OwnedFd` or `File` of the caller's, up the
/// stack) must never be used or dropped again, where a later descriptor could have
/// taken its number: call it in a child that goes on with `keep` only and never returns
/// (it ends with `exit_now`; panics abort).
pub unsafe fn close_all_except(keep: &[libc::c_int]) -> Result<()> {
    let mut keep: Vec<libc::c_uint> = keep
        .iter()
        .filter_map(|k| libc::c_uint::try_from(*k).ok())
        .collect();
    keep.sort_unstable();
    let mut first: libc::c_uint = 0;
    for k in keep {
        if k > first {
            close_range(first, k - 1)?;
        }
        first = k.saturating_add(1);
    }
    close_range(first, libc::c_uint::MAX)
}

/// Sets O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: libc::c_int) -> Result<()> {
    // SAFETY: F_GETFL takes no pointer.
    let flags = check("read a descriptor's flags", unsafe {
        libc::fcntl(fd, libc::F_GETFL)
    })?;
    // SAFETY: F_SETFL with integer flags only changes this descriptor's flags.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    check("make a descriptor non-blocking", ret).map(drop)
}

/// prctl(PR_SET_DUMPABLE): not dumpable means no core dump, and no ptrace, /proc/PID/mem
/// or /proc/PID/fd for anyone without CAP_SYS_PTRACE over its user namespace, whatever
/// their uid.
pub fn set_dumpable(on: bool) -> Result<()> {
    // SAFETY: prctl with integer arguments only changes this process's dumpable flag.
    let ret = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0, 0, 0) };
    check("set the dumpable flag", ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child's exit code after it watches the pipe whose read end is `r` and sets its
    /// death signal: 1 if it saw its parent gone, 0 if not.
    fn child_sees(r: OwnedFd, w: Option<OwnedFd>) -> i32 {
        match fork().unwrap() {
            0 => {
                drop(w);
                watch_parent(r);
                let _ = die_with_parent();
                exit_now(0)
            }
            pid => {
                drop(r);
                let code = wait_exit_code(pid);
                drop(w);
                code
            }
        }
    }

    /// Regression (review, item "passt's die-with-parent"): a child whose parent died
    /// before it set its death signal (between fork and prctl, or before a later prctl
    /// that a uid change made necessary) is never signalled; its getppid() cannot tell,
    /// being 0 in the room's own PID namespace. The pipe can: the child exits at once.
    #[test]
    fn a_parent_gone_before_the_death_signal_is_seen() {
        let (r, w) = pipe().unwrap();
        drop(w);
        assert_eq!(child_sees(r, None), 1, "parent gone: the child must end");
        let (r, w) = pipe().unwrap();
        assert_eq!(child_sees(r, Some(w)), 0, "parent alive: the child goes on");
    }
}
