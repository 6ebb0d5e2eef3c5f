// SPDX-License-Identifier: GPL-3.0-or-later
//! Every `unsafe` block and raw system call of anchor-vault: terminal echo, writev(2),
//! mount(2), prctl(2), statvfs(3), memfd_create(2), a loop device's backing file, and (in
//! [`esys`]) the few TPM commands tss-esapi 7 lacks.

pub mod esys;

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

fn cstr(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// True if `fd` is a terminal.
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Echo switched off on a terminal until dropped (then restored as it was).
#[derive(Debug)]
pub struct EchoOff {
    fd: RawFd,
    saved: libc::termios,
}

impl EchoOff {
    /// Switch echo off on `fd`; `Ok(None)` when `fd` is not a terminal.
    pub fn new(fd: RawFd) -> io::Result<Option<EchoOff>> {
        if !is_tty(fd) {
            return Ok(None);
        }
        // SAFETY: termios is plain data; zeroed is a valid value for tcgetattr to fill.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid termios for tcgetattr to write.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK | libc::ECHONL);
        quiet.c_lflag |= libc::ICANON;
        // TCSANOW: what the person already typed ahead is kept (and never echoed).
        // SAFETY: `quiet` is a valid termios copied from the current one.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(EchoOff { fd, saved }))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the termios read in `new` on the same descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// No core dumps and no ptrace attach by other processes of the same user: the
/// passphrase and the unsealed secret live in this process for a moment.
pub fn protect_memory() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// mount(2).
pub fn mount(
    source: &Path,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let (source, target) = (cstr(source)?, cstr(target)?);
    let fstype = CString::new(fstype).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let data = data
        .map(CString::new)
        .transpose()
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let data_ptr = data
        .as_ref()
        .map_or(std::ptr::null(), |d| d.as_ptr().cast::<libc::c_void>());
    // SAFETY: every pointer is a NUL-terminated string that outlives the call (or NULL
    // for data, which mount accepts).
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data_ptr,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// umount2(2).
pub fn umount(target: &Path) -> io::Result<()> {
    let target = cstr(target)?;
    // SAFETY: `target` is a NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Size and free space of the filesystem holding `path`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub total: u64,
    pub free: u64,
}

/// statvfs(3) of `path`.
pub fn fs_space(path: &Path) -> io::Result<FsSpace> {
    let p = cstr(path)?;
    // SAFETY: statvfs is plain data; zeroed is a valid value for statvfs to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `p` is a NUL-terminated path and `st` a valid out-parameter.
    if unsafe { libc::statvfs(p.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize;
    Ok(FsSpace {
        total: st.f_blocks.saturating_mul(frsize),
        free: st.f_bavail.saturating_mul(frsize),
    })
}

/// The (device, inode) of the file behind the loop device `dev`, or None if it has none.
pub fn loop_backing(dev: &std::fs::File) -> io::Result<Option<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
    // `struct loop_info64` (linux/loop.h): 232 bytes, 8-aligned, starting with the backing
    // file's `lo_device` and `lo_inode` (u64 each); anchor-jail's sys.rs spells out all
    // of it for LOOP_CONFIGURE. Only those two are read here.
    let mut info = [0u64; 29];
    // SAFETY: LOOP_GET_STATUS64 writes one 232-byte `struct loop_info64` to the pointer
    // given: `info` is ours, live, 232 bytes and 8-aligned.
    let ret = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_GET_STATUS64, info.as_mut_ptr()) };
    if ret == 0 {
        return Ok(info.first().copied().zip(info.get(1).copied()));
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        e => Err(e),
    }
}

/// True if `path` is a mount point (its device differs from its parent's).
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata(path)?;
    let parent = std::fs::metadata(path.join(".."))?;
    Ok(me.dev() != parent.dev() || me.ino() == parent.ino())
}

/// write(2) all of `bytes` to `fd` (one call unless the kernel takes less).
pub fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of the given length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = usize::try_from(n).unwrap_or(0);
        bytes = bytes.get(n..).unwrap_or_default();
    }
    Ok(())
}

/// `line` and a newline to `fd` in one writev(2), copying nothing (a line may hold a
/// secret, such as the recovery key shown once); what the kernel did not take is written
/// after it.
pub fn write_line(fd: RawFd, line: &[u8]) -> io::Result<()> {
    let iov = [
        libc::iovec {
            iov_base: line.as_ptr().cast_mut().cast(),
            iov_len: line.len(),
        },
        libc::iovec {
            iov_base: b"\n".as_ptr().cast_mut().cast(),
            iov_len: 1,
        },
    ];
    let n = loop {
        // SAFETY: both iovecs point at readable buffers of their lengths, which writev
        // only reads.
        let n = unsafe { libc::writev(fd, iov.as_ptr(), 2) };
        if n >= 0 {
            break usize::try_from(n).unwrap_or(0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if n <= line.len() {
        write_all(fd, line.get(n..).unwrap_or_default())?;
        write_all(fd, b"\n")?;
    }
    Ok(())
}

/// A new anonymous in-memory file (memfd_create(2), close-on-exec): nothing written to it
/// reaches a disk.
pub fn memfd(name: &str) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `name` is NUL-terminated; memfd_create returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// read(2) one byte from `fd`; `None` at end of file.
pub fn read_byte(fd: RawFd) -> io::Result<Option<u8>> {
    let mut b = 0u8;
    loop {
        // SAFETY: reads at most one byte into `b`.
        let n = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
        match n {
            1 => return Ok(Some(b)),
            0 => return Ok(None),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Ignore SIGTERM, SIGINT and SIGHUP from here on (a short step that must finish).
pub fn ignore_termination() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}
