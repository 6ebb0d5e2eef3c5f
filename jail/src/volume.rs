// SPDX-License-Identifier: GPL-3.0-or-later
//! A namespace room's vault volume (`--volume FILE`, docs/ARCHITECTURE.md "Room
//! volumes"): the same `/persist/volumes/NAME.img` file a microVM room gets as its
//! second disk, so its size is the policy's quota whatever the backend. The jail formats
//! a blank file on first use (ext4 by the host's mke2fs, no reserved blocks), attaches
//! it through an autoclear loop device and mounts it at /persist in the room
//! (nodev, nosuid, noexec). Only the room's root (host uid UID) is mapped into the room,
//! so the volume's root and everything in it are given to UID:GID before the room starts
//! (a volume written under another slot's uid, or by a microVM room, stays usable).
//! A file holding something other than a blank or an ext2/3/4 superblock is refused.

use std::fs::File;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::Path;

use anchor_proto::volume::{contents, Contents, HEAD};

use crate::args::Config;
use crate::error::{Error, Result};
use crate::root::io_err;
use crate::sys;

/// Where the volume appears in the room (an empty directory in every room image).
pub const MOUNT_POINT: &str = "persist";

fn head_of(file: &Path) -> Result<Vec<u8>> {
    let f = File::open(file).map_err(|e| io_err("open the vault volume", file, &e))?;
    let meta = f
        .metadata()
        .map_err(|e| io_err("stat the vault volume", file, &e))?;
    let len = usize::try_from(meta.len()).unwrap_or(usize::MAX).min(HEAD);
    let mut head = vec![0u8; len];
    f.read_exact_at(&mut head, 0)
        .map_err(|e| io_err("read the vault volume", file, &e))?;
    Ok(head)
}

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

fn format(file: &Path) -> Result<()> {
    let mkfs = mke2fs().ok_or(Error::Unsupported(
        "no mke2fs on this host to format the room's vault volume",
    ))?;
    let out = std::process::Command::new(mkfs)
        .args(["-q", "-F", "-t", "ext4", "-m", "0", "-L", "persist"])
        .arg(file)
        .env_clear()
        .output()
        .map_err(|e| io_err("run mke2fs on", file, &e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Path {
            op: "mke2fs failed on",
            path: file.display().to_string(),
            errno: libc::EIO,
        })
    }
}

/// Formats `file` if blank and mounts it at `new_root`/persist for the room of `cfg`;
/// whether it was formatted now.
pub fn attach(cfg: &Config, file: &Path, new_root: &Path) -> Result<bool> {
    crate::args::regular_file("--volume", file)?;
    let formatted = match contents(&head_of(file)?) {
        Contents::Ext => false,
        Contents::Blank => {
            format(file)?;
            true
        }
        Contents::Other => {
            return Err(Error::Path {
                op: "the vault volume holds something that is not a file system a room made:",
                path: file.display().to_string(),
                errno: libc::EINVAL,
            })
        }
    };
    let target = new_root.join(MOUNT_POINT);
    if !target.is_dir() {
        return Err(Error::Path {
            op: "the room image lacks the mount point",
            path: format!("/{MOUNT_POINT}"),
            errno: libc::ENOENT,
        });
    }
    let (dev, dev_path) = sys::loop_attach(file, true)?;
    sys::mount(
        "mount the room's vault volume",
        Some(&dev_path),
        &target,
        Some(c"ext4"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    drop(dev);
    give_to(&target, cfg.uid, cfg.gid)?;
    Ok(formatted)
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
