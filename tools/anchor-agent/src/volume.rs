// SPDX-License-Identifier: GPL-3.0-or-later
//! The room's vault volume: a second virtio disk bay0 attaches when the room's policy
//! names a vault volume (`anchor.persist=/dev/vdb`). It is mounted at /persist
//! (nodev,nosuid), the only place in the room whose contents outlive it. anchor-vault
//! creates the volume as a sparse file (all zeros); the agent formats it on first use
//! with the image's mke2fs: ext4 with a journal where the image carries e2fsprogs, else
//! busybox's (the ext2 layout, mounted by the ext4 driver, no journal). The host never
//! formats or mounts a volume. A disk holding something else is left alone.

use std::ffi::CString;
use std::io::Read;

use anchor_proto::volume::{contents, Contents, HEAD};

use crate::sys;

/// Where the volume is mounted (an empty directory in every room image).
pub const MOUNT_POINT: &str = "/persist";
/// Owner of a freshly formatted volume's root: the console shell's user.
pub const ROOM_UID: u32 = 1000;

fn read_head(dev: &str) -> Result<Vec<u8>, String> {
    let mut head = vec![0u8; HEAD];
    std::fs::File::open(dev)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("reading {dev}: {e}"))?;
    Ok(head)
}

/// Format (if blank) and mount the volume; a line for the console.
pub fn setup(dev: &str) -> Result<String, String> {
    let formatted = match contents(&read_head(dev)?) {
        Contents::Ext => false,
        Contents::Blank => {
            let mkfs = |args: &[&str]| {
                std::process::Command::new("mke2fs")
                    .args(args)
                    .arg(dev)
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
            true
        }
        Contents::Other => {
            return Err("holds something that is not a filesystem this room made".into())
        }
    };
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
    Ok(format!(
        "vault volume {dev} mounted on {MOUNT_POINT}{}",
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

    #[test]
    fn a_filesystem_made_by_mke2fs_is_recognised() {
        // What `setup` formats reads back as ext (mounting it needs a room).
        let Some(mke2fs) = ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
            .iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            panic!("mke2fs missing (apt-get install e2fsprogs)");
        };
        let dir = std::env::temp_dir().join(format!("agent-volume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("v.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        assert_eq!(
            contents(&read_head(img.to_str().unwrap()).unwrap()),
            Contents::Blank
        );
        let ok = std::process::Command::new(mke2fs)
            .args(["-q", "-F", "-L", "persist"])
            .arg(&img)
            .status()
            .unwrap();
        assert!(ok.success());
        assert_eq!(
            contents(&read_head(img.to_str().unwrap()).unwrap()),
            Contents::Ext
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
