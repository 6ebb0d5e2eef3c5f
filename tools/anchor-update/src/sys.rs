// SPDX-License-Identifier: GPL-3.0-or-later
//! The raw system calls of this crate (each `unsafe` block justified here and nowhere else).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Free bytes on the filesystem holding `path` (None if statvfs fails).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let c = cstr(path).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory of
    // the right type; statvfs only writes into it.
    let r = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Drop the file's clean pages from the page cache (posix_fadvise POSIX_FADV_DONTNEED),
/// so the next read of them comes from the device. Pages still dirty or under writeback
/// stay: call it after fsync.
pub fn drop_cached(f: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise takes no pointers; `f` keeps the descriptor open for the call.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    // It returns the error number instead of setting errno.
    match r {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// flock(LOCK_EX | LOCK_NB): Ok(false) when another open file description holds it.
pub fn try_lock_exclusive(f: &std::fs::File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock takes no pointers; `f` keeps the descriptor open for the call.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Give this process its own mount namespace whose mounts do not propagate back, so the
/// ESP and efivarfs mounts it makes vanish when it exits.
pub fn private_mounts() -> io::Result<()> {
    // SAFETY: unshare takes no pointers; it only changes this process's namespaces.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    let root = c"/";
    // SAFETY: valid NUL-terminated strings; a null fstype/data is allowed for a
    // propagation change.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })
}

/// mount(2) with a filesystem type, flags and options.
pub fn mount(
    source: &Path,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let (s, t) = (cstr(source)?, cstr(target)?);
    let f = CString::new(fstype).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let d = CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: all four pointers are valid NUL-terminated strings that outlive the call.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) })
}

/// umount(2).
pub fn umount(target: &Path) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: a valid NUL-terminated path.
    check(unsafe { libc::umount(t.as_ptr()) })
}

/// Sleep until killed (test builds: wait here for the power to be cut).
#[cfg(feature = "test-hooks")]
pub fn pause_forever() -> ! {
    loop {
        // SAFETY: pause takes no arguments and only waits for a signal.
        unsafe { libc::pause() };
    }
}
