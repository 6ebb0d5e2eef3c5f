// SPDX-License-Identifier: GPL-3.0-or-later
//! A namespace room's image, attached read-only through a loop device of the room's own.
//!
//! Never through another running room's device, though that would be faster (no loop
//! setup, the image's pages warm): two mounts of one block device are one SquashFS
//! superblock, so the two rooms would share the image's inodes, and with them every
//! per-inode fact the kernel shows: inotify events (one room watching `/bin/busybox`
//! sees another run it, as it happens), flock and POSIX locks (one room holding a lock
//! on an image file is seen by every other, a channel between rooms that no courier
//! approves), and the page cache. Rooms share no mount (docs/THREAT-MODEL.md); the
//! escape suite's image-watch and image-lock attempts try it from a room while another
//! of its image runs.
//!
//! The jail mounts through the device, then closes its descriptor; autoclear frees the
//! device when its last mount goes, i.e. with the room's mount namespace. A writable
//! loop device (a vault volume, [`crate::volume`]) is attached the same way.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::sys;

/// `LO_FLAGS_READ_ONLY` (linux/loop.h).
pub const LO_FLAGS_READ_ONLY: u32 = 1;
/// `LO_FLAGS_AUTOCLEAR` (linux/loop.h).
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// The image's loop device, opened: keep `fd` until the mount holds the device.
#[derive(Debug)]
pub struct Attached {
    pub fd: OwnedFd,
    pub path: PathBuf,
}

impl Attached {
    /// The device's name, `loopN`, for the room's log line.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A fresh read-only, autoclear loop device for `image`.
pub fn attach(image: &Path) -> Result<Attached> {
    let (fd, path) = sys::loop_attach_readonly(image)?;
    Ok(Attached { fd, path })
}
