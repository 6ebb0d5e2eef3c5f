// SPDX-License-Identifier: GPL-3.0-or-later
//! The jail's root file system: a small tmpfs holding only what the program needs
//! (read-only binds of the listed files, writable binds of the listed regular files,
//! the listed device nodes, and the room's run directory as /run), pivoted into, with
//! the host's tree detached and the tmpfs made read-only. Built inside the jail's private mount namespace: the host sees none of it.

use std::path::{Path, PathBuf};

use crate::args::Config;
use crate::error::{Error, Result};
use crate::sys;

const RO_BIND: libc::c_ulong =
    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;

pub(crate) fn io_err(op: &'static str, path: &Path, e: &std::io::Error) -> Error {
    Error::Path {
        op,
        path: path.display().to_string(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// Nothing mounted from here on propagates to the host, and nothing of the host's
/// reaches this mount namespace.
pub fn make_private() -> Result<()> {
    sys::mount(
        "make the mount tree private",
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
}

pub(crate) fn mkdir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| io_err("mkdir", path, &e))
}

/// `new_root` joined with an absolute jail path.
pub(crate) fn inside(new_root: &Path, jail: &Path) -> PathBuf {
    new_root.join(jail.strip_prefix("/").unwrap_or(jail))
}

/// Builds the root under the room's run directory and pivots into it.
pub fn build_and_enter(cfg: &Config) -> Result<()> {
    make_private()?;
    let new_root = cfg.run_dir.join(".root");
    mkdir_all(&new_root)?;
    sys::mount(
        "mount the jail's tmpfs",
        Some(Path::new("tmpfs")),
        &new_root,
        Some(c"tmpfs"),
        libc::MS_NOSUID,
        Some(c"mode=0755,size=1m,nr_inodes=512"),
    )?;
    for bind in &cfg.binds {
        let target = inside(&new_root, &bind.jail);
        if let Some(parent) = target.parent() {
            mkdir_all(parent)?;
        }
        let meta = std::fs::metadata(&bind.host).map_err(|e| io_err("stat", &bind.host, &e))?;
        if meta.is_dir() {
            mkdir_all(&target)?;
        } else {
            // A new, empty file of the jail's tmpfs: never an existing one opened for
            // writing (truncated), whatever the paths given.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(|e| io_err("create", &target, &e))?;
        }
        if bind.writable {
            bind_writable(&bind.host, &target)?;
            continue;
        }
        sys::mount("bind", Some(&bind.host), &target, None, libc::MS_BIND, None)?;
        sys::mount("make read-only", None, &target, None, RO_BIND, None)?;
    }
    let dev = new_root.join("dev");
    mkdir_all(&dev)?;
    for d in &cfg.devs {
        let (name, major, minor, mode) = d.node();
        let node = dev.join(name);
        sys::mknod_char(&node, mode, major, minor)?;
        sys::chmod(&node, mode)?;
        sys::chown(&node, cfg.uid, cfg.gid)?;
    }
    let run = new_root.join("run");
    mkdir_all(&run)?;
    sys::mount("bind", Some(&cfg.run_dir), &run, None, libc::MS_BIND, None)?;
    let rw = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys::mount("restrict /run", None, &run, None, rw, None)?;
    enter(&new_root)?;
    sys::mount(
        "make the jail's root read-only",
        None,
        Path::new("/"),
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID,
        None,
    )
}

/// Binds the regular file `host` writable (nosuid, nodev, noexec) at `target`, and checks
/// that the mount shows the very file that was checked (a path swapped for a symlink
/// between the check and the mount is caught).
fn bind_writable(host: &Path, target: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let checked = crate::args::regular_file("--rw", host)?;
    sys::mount("bind", Some(host), target, None, libc::MS_BIND, None)?;
    let rw = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys::mount("restrict a writable bind", None, target, None, rw, None)?;
    // Opened once (never blocking, should a FIFO have been swapped in): the identity is
    // checked and the mark set on what was opened.
    let shown = std::fs::File::from(sys::open_path(
        target,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW,
    )?);
    let meta = shown.metadata().map_err(|e| io_err("stat", target, &e))?;
    if (meta.dev(), meta.ino()) != checked || !meta.is_file() {
        return Err(Error::Usage(format!(
            "--rw: {} changed while it was being mounted",
            host.display()
        )));
    }
    // The VMM's guest writes this file's blocks as it likes: marked, so that the host
    // kernel never mounts it (a namespace room's vault volume, crate::volume).
    sys::mark_guest_disk(&shown, host)
}

/// Makes the mount at `new_root` this process's root and working directory, the old root
/// detached. The initramfs root (rootfs) cannot be pivoted away from (EINVAL): there the
/// new root is moved over / and made the process root instead; the rootfs underneath
/// stays unreachable, since reaching it would take an unmount, i.e. CAP_SYS_ADMIN over
/// this mount namespace, which the jailed program never has. (Our mount being the topmost
/// on /, the process does not count as chrooted: it may still create a user namespace.)
pub fn enter(new_root: &Path) -> Result<()> {
    let slash = Path::new("/");
    sys::chdir(new_root)?;
    match sys::pivot_root_here() {
        Ok(()) => sys::umount(Path::new("."), libc::MNT_DETACH)?,
        Err(Error::Sys { errno, .. }) if errno == libc::EINVAL => {
            sys::mount(
                "move the jail root over /",
                Some(Path::new(".")),
                slash,
                None,
                libc::MS_MOVE,
                None,
            )?;
            sys::chroot(Path::new("."))?;
        }
        Err(e) => return Err(e),
    }
    sys::chdir(slash)
}
