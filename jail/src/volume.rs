// SPDX-License-Identifier: GPL-3.0-or-later
//! A namespace room's vault volume (`--volume FILE`, docs/ARCHITECTURE.md "Room
//! volumes"): the same `/persist/volumes/NAME.img` file a microVM room gets as its
//! second disk, so its size is the policy's quota whatever the backend. The jail formats
//! a blank file on first use (ext4 by the host's mke2fs, no reserved blocks), attaches
//! it through an autoclear loop device and mounts it at /persist in the room
//! (nodev, nosuid, noexec). Only the room's root (host uid UID) is mapped into the room,
//! so the volume's root and everything in it are given to UID:GID before the room starts
//! (a volume written under another slot's uid stays usable).
//! A file holding something other than a blank or an ext2/3/4 superblock is refused, but
//! for a format of ours cut short (anchor-proto `volume`: the mark at its end), which is
//! formatted again; so is a file that was ever a microVM's disk (the VMM jail marks it,
//! `trusted.anchor.guest-disk`): its guest wrote its blocks, and the host kernel never
//! parses a file system a guest made. A file longer than its file system (anchor-vault
//! grew it: its quota grew) has the file system grown online once mounted (`EXT4_IOC_RESIZE_FS`);
//! if that fails the room keeps the old size, and the log says so.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anchor_proto::volume::{self as judge, Contents};

use crate::args::Config;
use crate::error::{Error, Result};
use crate::root::io_err;
use crate::sys;

/// Where the volume appears in the room (an empty directory in every room image).
pub const MOUNT_POINT: &str = "persist";

/// mke2fs from e2fsprogs, where the host keeps it.
fn mke2fs() -> Option<&'static str> {
    [
        "/usr/sbin/mke2fs",
        "/sbin/mke2fs",
        "/usr/bin/mke2fs",
        "/bin/mke2fs",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file())
}

fn open_volume(file: &Path, write: bool) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(file)
        .map_err(|e| io_err("open the vault volume", file, &e))
}

/// What the volume `file` holds: its head and the block where a format's mark goes.
fn judge_file(file: &Path) -> Result<Contents> {
    judge::judge_volume(&open_volume(file, false)?)
        .map_err(|e| io_err("read the vault volume", file, &e))
}

/// Writes (`on`) or clears the format's mark on `file`, durably.
fn put_mark(file: &Path, on: bool) -> Result<()> {
    judge::set_mark(&open_volume(file, true)?, on)
        .map_err(|e| io_err("write the format mark on the vault volume", file, &e))
}

/// Formats `file` with the mke2fs at `mkfs`: the mark first (durable), mke2fs on
/// everything before it, then the mark cleared. Cut short anywhere, the volume is blank,
/// or [`Contents::Unfinished`] (formatted again next time), or ext.
fn format_with(file: &Path, mkfs: &Path) -> Result<()> {
    put_mark(file, true)?;
    let len = judge::size(&open_volume(file, false)?)
        .map_err(|e| io_err("read the vault volume", file, &e))?;
    let kib = judge::fs_kib(len).unwrap_or(0).to_string();
    let out = std::process::Command::new(mkfs)
        .args(["-q", "-F", "-t", "ext4", "-m", "0", "-L", "persist"])
        .arg(file)
        .arg(kib)
        .env_clear()
        .output()
        .map_err(|e| io_err("run mke2fs on", file, &e))?;
    if !out.status.success() {
        return Err(Error::Path {
            op: "mke2fs failed on",
            path: file.display().to_string(),
            errno: libc::EIO,
        });
    }
    put_mark(file, false)
}

/// Refuses a file that was a microVM's writable disk ([`sys::GUEST_DISK`]): its guest
/// wrote every block as it liked (a microVM room's agent formats its own volume), and a
/// file system made to trip the host kernel's ext4 code would be parsed by the host
/// kernel, outside every room. Such a volume stays a microVM room's (docs/THREAT-MODEL.md).
fn refuse_guest_disk(file: &Path) -> Result<()> {
    let fd = sys::open_path(file, libc::O_RDONLY | libc::O_NOFOLLOW)?;
    if sys::is_guest_disk(&fd, file)? {
        return Err(Error::Path {
            op: "the vault volume was a microVM room's disk, which the host kernel never mounts:",
            path: file.display().to_string(),
            errno: libc::EPERM,
        });
    }
    Ok(())
}

/// Formats `file` if it is blank or a format was cut short (with the mke2fs at `mkfs`);
/// whether it was formatted now. Refuses anything else but ext.
fn prepare(file: &Path, mkfs: Option<&Path>) -> Result<bool> {
    match judge_file(file)? {
        Contents::Ext => {
            // A format that finished but was cut short before its mark was cleared.
            let marked = judge::is_marked(&open_volume(file, false)?)
                .map_err(|e| io_err("read the vault volume", file, &e))?;
            if marked {
                put_mark(file, false)?;
            }
            Ok(false)
        }
        Contents::Blank | Contents::Unfinished => {
            let mkfs = mkfs.ok_or(Error::Unsupported(
                "no mke2fs on this host to format the room's vault volume",
            ))?;
            format_with(file, mkfs)?;
            Ok(true)
        }
        Contents::Other => Err(Error::Path {
            op: "the vault volume holds something that is not a file system a room made:",
            path: file.display().to_string(),
            errno: libc::EINVAL,
        }),
    }
}

/// What [`attach`] did besides mounting the volume.
#[derive(Debug)]
pub struct Attached {
    /// It was blank (or a format was cut short) and was formatted now.
    pub formatted: bool,
    /// Its quota had grown: the line saying whether its file system grew with it.
    pub grown: Option<String>,
}

/// Opens the volume `file` read-write and takes its shared `flock`, which the loop device
/// keeps (it holds this open file) for as long as the room has the volume mounted.
/// `anchor-vault volume delete` holds the exclusive lock from its check until the file is
/// unlinked: a volume being deleted is refused, and once this lock is held no delete goes
/// through. A file deleted or replaced between the open and the lock is refused too (the
/// room would write where no name reaches).
fn claim(file: &Path) -> Result<OwnedFd> {
    let fd = sys::open_path(file, libc::O_RDWR | libc::O_NOFOLLOW)?;
    let refused = |op, errno| Error::Path {
        op,
        path: file.display().to_string(),
        errno,
    };
    if !sys::try_lock_shared(&fd, file)? {
        return Err(refused(
            "not attached: anchor-vault volume delete is deleting the vault volume",
            libc::EBUSY,
        ));
    }
    let held = File::from(fd.try_clone().map_err(|e| io_err("dup", file, &e))?)
        .metadata()
        .map_err(|e| io_err("stat", file, &e))?;
    let named = std::fs::symlink_metadata(file).ok();
    let same = named.is_some_and(|n| (n.dev(), n.ino()) == (held.dev(), held.ino()));
    if held.nlink() == 0 || !same {
        return Err(refused(
            "not attached: the vault volume was deleted or replaced while it was being \
             attached:",
            libc::ENOENT,
        ));
    }
    Ok(fd)
}

/// Formats `file` if blank, mounts it at `new_root`/persist for the room of `cfg`, and
/// grows its file system if the file grew (its quota did) since it was made.
pub fn attach(cfg: &Config, file: &Path, new_root: &Path) -> Result<Attached> {
    crate::args::regular_file("--volume", file)?;
    let volume = claim(file)?;
    refuse_guest_disk(file)?;
    let formatted = prepare(file, mke2fs().map(Path::new))?;
    let growth = judge::growth_of(&open_volume(file, false)?)
        .map_err(|e| io_err("read the vault volume", file, &e))?;
    let target = new_root.join(MOUNT_POINT);
    if !target.is_dir() {
        return Err(Error::Path {
            op: "the room image lacks the mount point",
            path: format!("/{MOUNT_POINT}"),
            errno: libc::ENOENT,
        });
    }
    let (dev, dev_path) = sys::loop_attach_open(&volume, file, true)?;
    sys::mount(
        "mount the room's vault volume",
        Some(&dev_path),
        &target,
        Some(c"ext4"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    drop(dev);
    let grown = growth.map(|g| g.said(sys::ext4_grow(&target, g.to)));
    give_to(&target, cfg.uid, cfg.gid)?;
    Ok(Attached { formatted, grown })
}

/// Gives `root` and everything under it to `uid`:`gid`, never following a symlink
/// (they are changed themselves) and never recursing on the stack (a hostile tree may be
/// deep). The room is not running yet: nothing moves under the walk.
pub fn give_to(root: &Path, uid: u32, gid: u32) -> Result<()> {
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io_err("stat", &path, &e))?;
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                .map_err(|e| io_err("chown", &path, &e))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| io_err("read", &path, &e))? {
                todo.push(entry.map_err(|e| io_err("read", &path, &e))?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchor_proto::volume::MARK;
    use std::os::unix::fs::FileExt as _;

    /// A volume whose first format was cut short (the room closed or the power went
    /// while mke2fs ran: everything but the superblock, which mke2fs writes last) must
    /// be formatted again at the next start, not refused for ever as "something that is
    /// not a file system"; anything else that is not ext stays refused.
    #[test]
    fn a_format_cut_short_is_done_again_and_nothing_else_is_formatted_over() {
        let Some(real) = mke2fs() else {
            panic!("mke2fs missing (apt-get install e2fsprogs)");
        };
        let dir = std::env::temp_dir().join(format!("jail-format-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let vol = dir.join("v.img");
        File::create(&vol).unwrap().set_len(32 << 20).unwrap();
        // mke2fs cut short just before its last write, the superblock.
        let cut = dir.join("mke2fs-cut-short");
        std::fs::write(
            &cut,
            format!(
                "#!/bin/sh\n{real} \"$@\" || exit 1\n\
                 for a; do case $a in /*) f=$a;; esac; done\n\
                 dd if=/dev/zero of=\"$f\" bs=1024 seek=1 count=1 conv=notrunc 2>/dev/null\n\
                 kill -9 $$\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cut, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert!(prepare(&vol, Some(&cut)).is_err());
        assert_eq!(judge_file(&vol).unwrap(), Contents::Unfinished);
        assert!(
            prepare(&vol, Some(Path::new(real))).unwrap(),
            "formatted again"
        );
        assert_eq!(judge_file(&vol).unwrap(), Contents::Ext);
        let mut tail = [0u8; MARK.len()];
        File::open(&vol)
            .unwrap()
            .read_exact_at(&mut tail, (32 << 20) - 4096)
            .unwrap();
        assert_eq!(tail, [0u8; MARK.len()], "the mark is cleared");
        assert!(!prepare(&vol, Some(Path::new(real))).unwrap(), "kept");
        // Not ours: refused, untouched.
        let other = dir.join("other.img");
        File::create(&other).unwrap().set_len(32 << 20).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&other)
            .unwrap()
            .write_all_at(b"XFSB", 0)
            .unwrap();
        assert!(prepare(&other, Some(Path::new(real))).is_err());
        assert_eq!(judge_file(&other).unwrap(), Contents::Other);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tree_is_given_away_without_following_symlinks() {
        let dir = std::env::temp_dir().join(format!("jail-give-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let deep = (0..300).fold(dir.join("tree"), |p, i| p.join(format!("d{i}")));
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), b"x").unwrap();
        let outside = dir.join("outside");
        std::fs::write(&outside, b"host").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("tree/link")).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let e = give_to(&dir.join("tree"), 64_321, 64_321).unwrap_err();
            assert!(e.to_string().contains("chown"), "{e}");
        } else {
            give_to(&dir.join("tree"), 64_321, 64_321).unwrap();
            let owner = |p: &Path| std::fs::symlink_metadata(p).unwrap().uid();
            assert_eq!(owner(&deep.join("f")), 64_321);
            assert_eq!(owner(&dir.join("tree/link")), 64_321);
            assert_eq!(owner(&outside), 0, "the symlink's target was changed");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
