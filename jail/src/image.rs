// SPDX-License-Identifier: GPL-3.0-or-later
//! A namespace room's image, attached read-only: through the loop device of a running
//! room of the same image when there is one, else through a fresh one.
//!
//! Sharing the device means both rooms' root mounts share one SquashFS superblock, so
//! one page cache of the decompressed image: a room that starts while another of its
//! image runs finds the image's pages warm and sets up no loop device. How a device is
//! chosen (docs/ARCHITECTURE.md, "The namespace backend"):
//!
//! 1. candidates are the bound loop devices whose `/sys/block/loopN/loop/backing_file`
//!    names the image's path (a cheap filter, trusted for nothing);
//! 2. the jail opens `/dev/loopN` read-only first: an open device is never torn down by
//!    autoclear (the kernel clears it only on the last close, and the open and the last
//!    close are serialised by the disk's open mutex), and one already running down
//!    refuses the open (newer kernels) or the status query (Linux 6.1) with ENXIO;
//! 3. `LOOP_GET_STATUS64` on that descriptor must show the image's own device and inode
//!    (so never another file that took the path), offset 0, no size limit, no transfer
//!    function, and the flags read-only and autoclear, which is how [`crate::sys::loop_attach_readonly`] makes
//!    them ([`shareable`]); anything else, or any error, and the next candidate is tried;
//! 4. none left: a fresh device, as before sharing existed.
//!
//! The jail mounts through the device, then closes its descriptor; autoclear frees the
//! device when the last mount of it goes, i.e. with the last room of the image. Two jails
//! starting at once may both attach fresh devices (two superblocks, as without sharing);
//! neither can get a wrong image or fail for the other's sake. A writable loop device (a
//! vault volume, [`crate::volume`]) is never shared: it is attached elsewhere, and a
//! device without the read-only flag is refused here.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::sys;

/// `LO_FLAGS_READ_ONLY` (linux/loop.h).
pub const LO_FLAGS_READ_ONLY: u32 = 1;
/// `LO_FLAGS_AUTOCLEAR` (linux/loop.h).
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// What `LOOP_GET_STATUS64` says about a bound loop device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopStatus {
    /// The backing file's device, in the kernel's `huge_encode_dev` form (the same
    /// encoding stat(2) gives userspace).
    pub device: u64,
    /// The backing file's inode number.
    pub inode: u64,
    /// Where in the file the device starts.
    pub offset: u64,
    /// How many bytes of the file it shows (0: all).
    pub sizelimit: u64,
    /// `LO_FLAGS_*`.
    pub flags: u32,
    /// A transfer function (old kernels' cryptoloop; 0: the file's bytes as they are).
    pub encrypt_type: u32,
}

/// A file's identity: the major and minor numbers of its device, and its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

impl FileId {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        let dev = meta.dev();
        FileId {
            major: libc::major(dev),
            minor: libc::minor(dev),
            inode: meta.ino(),
        }
    }
}

/// The major and minor numbers of a device number in the kernel's `new_encode_dev`
/// form (12-bit major in bits 8..20; minor in bits 0..8 and 20..32).
pub fn decode_dev(dev: u64) -> (u32, u32) {
    let major = (dev >> 8) & 0xfff;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xf_ff00);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

/// True only for a device a room may share: the whole of `image` (its device and
/// inode, offset 0, no size limit, no transfer function), read-only and autoclear.
pub fn shareable(status: &LoopStatus, image: FileId) -> bool {
    let want = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    decode_dev(status.device) == (image.major, image.minor)
        && status.inode == image.inode
        && status.offset == 0
        && status.sizelimit == 0
        && status.encrypt_type == 0
        && status.flags & want == want
}

/// N of a `/sys/block` entry named `loopN`.
pub fn loop_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("loop")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// How the room got its image's loop device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Another running room's device (`/dev/loopN`).
    Shared(u32),
    /// A device attached now.
    Fresh,
}

/// The image's loop device, opened: keep `fd` until the mount holds the device.
#[derive(Debug)]
pub struct Attached {
    pub fd: OwnedFd,
    pub path: PathBuf,
    pub how: How,
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

/// Bound loop devices whose backing file's path (as sysfs shows it) is `image`.
fn candidates(image: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let want = image.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(loop_number) else {
            continue;
        };
        // Only a bound device has loop/backing_file.
        let Ok(text) = std::fs::read(entry.path().join("loop/backing_file")) else {
            continue;
        };
        if text.strip_suffix(b"\n").unwrap_or(&text) == want {
            found.push(n);
        }
    }
    found
}

/// `/dev/loopN` opened read-only, if it is a device a room of `image` may share.
fn probe(n: u32, image: FileId) -> Option<(OwnedFd, PathBuf)> {
    let path = PathBuf::from(format!("/dev/loop{n}"));
    // Opened first: from here the device cannot be cleared under us.
    let fd = sys::open_path(&path, libc::O_RDONLY).ok()?;
    let status = sys::loop_status(&fd).ok()?;
    shareable(&status, image).then_some((fd, path))
}

/// The loop device of another running room of `image` (described by `meta`), if there
/// is one a room may share.
pub fn find_shared(image: &Path, meta: &std::fs::Metadata) -> Option<Attached> {
    let id = FileId::of(meta);
    let canonical = std::fs::canonicalize(image).ok()?;
    candidates(&canonical).into_iter().find_map(|n| {
        probe(n, id).map(|(fd, path)| Attached {
            fd,
            path,
            how: How::Shared(n),
        })
    })
}

/// A fresh read-only, autoclear loop device for `image`.
pub fn attach_fresh(image: &Path) -> Result<Attached> {
    let (fd, path) = sys::loop_attach_readonly(image)?;
    Ok(Attached {
        fd,
        path,
        how: How::Fresh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `new_encode_dev` (include/linux/kdev_t.h).
    fn encode(major: u64, minor: u64) -> u64 {
        (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
    }

    const IMAGE: FileId = FileId {
        major: 254,
        minor: 1,
        inode: 4242,
    };

    fn exact() -> LoopStatus {
        LoopStatus {
            device: encode(254, 1),
            inode: 4242,
            offset: 0,
            sizelimit: 0,
            flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
            encrypt_type: 0,
        }
    }

    #[test]
    fn only_the_whole_image_read_only_and_autoclear_is_shared() {
        assert!(shareable(&exact(), IMAGE));
        // Partition scanning or direct I/O change nothing a reader sees.
        let extra = LoopStatus {
            flags: exact().flags | 8 | 16,
            ..exact()
        };
        assert!(shareable(&extra, IMAGE));
        let refused = [
            (
                "another inode",
                LoopStatus {
                    inode: 4243,
                    ..exact()
                },
            ),
            (
                "another device (minor)",
                LoopStatus {
                    device: encode(254, 2),
                    ..exact()
                },
            ),
            (
                "another device (major)",
                LoopStatus {
                    device: encode(8, 1),
                    ..exact()
                },
            ),
            (
                "an offset",
                LoopStatus {
                    offset: 512,
                    ..exact()
                },
            ),
            (
                "a size limit",
                LoopStatus {
                    sizelimit: 4096,
                    ..exact()
                },
            ),
            (
                "writable",
                LoopStatus {
                    flags: LO_FLAGS_AUTOCLEAR,
                    ..exact()
                },
            ),
            (
                "not autoclear",
                LoopStatus {
                    flags: LO_FLAGS_READ_ONLY,
                    ..exact()
                },
            ),
            (
                "no flags",
                LoopStatus {
                    flags: 0,
                    ..exact()
                },
            ),
            (
                "a transfer function",
                LoopStatus {
                    encrypt_type: 1,
                    ..exact()
                },
            ),
        ];
        for (what, status) in refused {
            assert!(!shareable(&status, IMAGE), "{what} was accepted");
        }
    }

    #[test]
    fn device_numbers_decode_as_the_kernel_encodes_them() {
        assert_eq!(decode_dev(encode(7, 3)), (7, 3));
        assert_eq!(decode_dev(encode(259, 0x12345)), (259, 0x12345));
        assert_eq!(decode_dev(encode(4095, 0xf_ffff)), (4095, 0xf_ffff));
        // glibc's makedev (what std's metadata gives) agrees with the kernel's form.
        let dev = libc::makedev(259, 0x12345);
        assert_eq!(decode_dev(dev), (libc::major(dev), libc::minor(dev)));
        // A large minor's high bits are not taken for the major, nor the reverse.
        let big_minor = LoopStatus {
            device: encode(254, 1 | 0x100),
            ..exact()
        };
        assert!(!shareable(&big_minor, IMAGE));
    }

    #[test]
    fn only_loop_devices_are_candidates() {
        assert_eq!(loop_number("loop0"), Some(0));
        assert_eq!(loop_number("loop17"), Some(17));
        for name in ["loop", "loop-control", "loop1p1", "vda", "zram0", "loopx"] {
            assert_eq!(loop_number(name), None, "{name}");
        }
    }
}
