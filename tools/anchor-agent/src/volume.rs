// SPDX-License-Identifier: GPL-3.0-or-later
//! The room's vault volume: a second virtio disk bay0 attaches when the room's policy
//! names a vault volume (`anchor.persist=/dev/vdb`). It is mounted at /persist
//! (nodev,nosuid), the only place in the room whose contents outlive it. anchor-vault
//! creates the volume as a sparse file (all zeros); the agent formats it on first use
//! with the image's mke2fs: ext4 with a journal where the image carries e2fsprogs, else
//! busybox's (the ext2 layout, mounted by the ext4 driver, no journal). The host never
//! formats or mounts a volume. A disk holding something else is left alone, but for a
//! format of ours cut short (anchor-proto `volume`: the mark at its end), formatted again.
//! A disk longer than its file system (anchor-vault grew it: its quota grew) has the file
//! system grown online once mounted (`EXT4_IOC_RESIZE_FS`, by the room's own kernel); if
//! that fails the room keeps the old size, and the console line says so.

use std::ffi::CString;

use anchor_proto::volume::{self as judge, Contents};

use crate::sys;

/// Where the volume is mounted (an empty directory in every room image).
pub const MOUNT_POINT: &str = "/persist";
/// Owner of a freshly formatted volume's root: the console shell's user.
pub const ROOM_UID: u32 = 1000;

fn open_volume(dev: &str, write: bool) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(dev)
        .map_err(|e| format!("opening {dev}: {e}"))
}

/// Writes (`on`) or clears the format's mark on `dev`, durably.
fn put_mark(dev: &str, on: bool) -> Result<(), String> {
    judge::set_mark(&open_volume(dev, true)?, on)
        .map_err(|e| format!("writing the format mark on {dev}: {e}"))
}

/// Formats `dev` with `mke2fs` (a program name, looked up in the usual directories): the
/// mark first, mke2fs on everything before it, then the mark cleared.
fn format_with(dev: &str, mke2fs: &str) -> Result<(), String> {
    put_mark(dev, true)?;
    let len = judge::size(&open_volume(dev, false)?).map_err(|e| format!("sizing {dev}: {e}"))?;
    let kib = judge::fs_kib(len).unwrap_or(0).to_string();
    let mkfs = |args: &[&str]| {
        std::process::Command::new(mke2fs)
            .args(args)
            .arg(dev)
            .arg(&kib)
            .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
            .output()
    };
    // e2fsprogs first (ext4, journal); busybox's mke2fs knows no -t.
    let ext4 = mkfs(&["-q", "-F", "-t", "ext4", "-L", "persist"]);
    if !ext4.as_ref().is_ok_and(|o| o.status.success()) {
        let out = mkfs(&["-F", "-L", "persist"]).map_err(|e| format!("mke2fs: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mke2fs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    put_mark(dev, false)
}

/// Formats `dev` if blank or if a format of ours was cut short; whether it did.
fn prepare(dev: &str, mke2fs: &str) -> Result<bool, String> {
    let read = |e: std::io::Error| format!("reading {dev}: {e}");
    match judge::judge_volume(&open_volume(dev, false)?).map_err(read)? {
        Contents::Ext => {
            // A format that finished but was cut short before its mark was cleared.
            if judge::is_marked(&open_volume(dev, false)?).map_err(read)? {
                put_mark(dev, false)?;
            }
            Ok(false)
        }
        Contents::Blank | Contents::Unfinished => format_with(dev, mke2fs).map(|()| true),
        Contents::Other => Err("holds something that is not a filesystem this room made".into()),
    }
}

/// Format (if blank), mount the volume and grow its file system if the disk grew since;
/// a line for the console.
pub fn setup(dev: &str) -> Result<String, String> {
    let formatted = prepare(dev, "mke2fs")?;
    let growth =
        judge::growth_of(&open_volume(dev, false)?).map_err(|e| format!("reading {dev}: {e}"))?;
    let cs = |s: &str| CString::new(s).map_err(|_| "path with a NUL byte".to_owned());
    let (source, target, fstype) = (cs(dev)?, cs(MOUNT_POINT)?, cs("ext4")?);
    sys::mount(
        "mount the vault volume",
        &source,
        &target,
        &fstype,
        libc::MS_NODEV | libc::MS_NOSUID,
        None,
    )
    .map_err(|e| e.to_string())?;
    if formatted {
        std::os::unix::fs::chown(MOUNT_POINT, Some(ROOM_UID), Some(ROOM_UID))
            .map_err(|e| format!("chown {MOUNT_POINT}: {e}"))?;
    }
    let grown = growth
        .map(|g| format!("; {}", g.said(sys::ext4_grow(&target, g.to))))
        .unwrap_or_default();
    Ok(format!(
        "vault volume {dev} mounted on {MOUNT_POINT}{}{grown}",
        if formatted {
            " (formatted on first use)"
        } else {
            ""
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first format of a room's volume cut short (the room closed, or the power
    /// went, while mke2fs ran: everything but the superblock, which it writes last) is
    /// done again at the next start instead of the volume being refused for ever; the
    /// result reads back as ext, and is kept from then on.
    #[test]
    fn a_format_cut_short_is_done_again() {
        let Some(real) = ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            panic!("mke2fs missing (apt-get install e2fsprogs)");
        };
        let dir = std::env::temp_dir().join(format!("agent-volume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("v.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let img = img.to_str().unwrap();
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
        let judged = || judge::judge_volume(&std::fs::File::open(img).unwrap()).unwrap();
        assert_eq!(judged(), Contents::Blank);
        assert!(prepare(img, cut.to_str().unwrap()).is_err());
        assert_eq!(judged(), Contents::Unfinished);
        assert!(prepare(img, real).unwrap(), "formatted again");
        assert_eq!(judged(), Contents::Ext);
        assert!(!judge::is_marked(&std::fs::File::open(img).unwrap()).unwrap());
        assert!(!prepare(img, real).unwrap(), "kept");
        // Something else is left alone.
        let other = dir.join("other.img");
        std::fs::write(&other, vec![7u8; 1 << 20]).unwrap();
        assert!(prepare(other.to_str().unwrap(), real).is_err());
        assert_eq!(std::fs::read(&other).unwrap(), vec![7u8; 1 << 20]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
