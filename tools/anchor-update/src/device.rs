// SPDX-License-Identifier: GPL-3.0-or-later
//! On the device: find and mount the ESP for the duration of one command. Everything
//! happens in a private mount namespace, so the ESP and efivarfs are never mounted for
//! bay0 or the rooms, and vanish when the command exits (the base stays read-only).

use crate::efivars::{self, LoaderInfo, EFIVARS};
use crate::esp::Esp;
use crate::gpt;
use crate::sys;
use crate::version::Version;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The running base's os-release (inside the signed initramfs).
pub const OS_RELEASE: &str = "/usr/lib/os-release";
/// The certificate updates must be signed with (our Secure Boot db certificate).
pub const DB_CERT: &str = "/etc/anchor/secureboot/db.der";
/// Where the ESP is mounted, privately.
const MOUNT_POINT: &str = "/run/anchor-update/esp";

/// Why the ESP could not be reached.
#[derive(Debug)]
pub enum DeviceError {
    NotUefi,
    Namespace(std::io::Error),
    Efivarfs(std::io::Error),
    NoEsp(String),
    /// The partition UUID systemd-boot reported is on more than one disk.
    SeveralEsps {
        partuuid: String,
        devices: Vec<PathBuf>,
    },
    Mount {
        dev: PathBuf,
        err: std::io::Error,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::NotUefi => f.write_str(
                "not booted through UEFI (no /sys/firmware/efi): there are no A/B slots here",
            ),
            DeviceError::Namespace(e) => write!(f, "private mount namespace: {e}"),
            DeviceError::Efivarfs(e) => write!(f, "mount efivarfs on {EFIVARS}: {e}"),
            DeviceError::NoEsp(why) => write!(f, "no ESP found: {why}"),
            DeviceError::SeveralEsps { partuuid, devices } => {
                let names: Vec<String> = devices.iter().map(|d| d.display().to_string()).collect();
                write!(
                    f,
                    "the ESP's partition UUID {partuuid} (LoaderDevicePartUUID) is on several \
                     disks ({}): which one booted is unknown; remove the disk that did not \
                     boot (a copy of this one?) and try again",
                    names.join(", ")
                )
            }
            DeviceError::Mount { dev, err } => {
                write!(f, "mount ESP {} on {MOUNT_POINT}: {err}", dev.display())
            }
        }
    }
}

impl std::error::Error for DeviceError {}

/// The ESP of this machine, mounted privately, and what the loader reported.
#[derive(Debug)]
pub struct Device {
    pub esp: Esp,
    pub info: LoaderInfo,
    pub esp_device: PathBuf,
}

/// The running base's version (None when this is not an Anchor OS base).
pub fn running_version() -> Option<Version> {
    let raw = std::fs::read(OS_RELEASE).ok()?;
    crate::osrel::anchor_version(&raw).ok()
}

/// Whether this machine booted through UEFI (else it has no ESP and no A/B slots).
pub fn booted_through_uefi() -> bool {
    Path::new("/sys/firmware/efi").is_dir()
}

/// Enter a private mount namespace, read the loader variables and mount the ESP.
pub fn open() -> Result<Device, DeviceError> {
    if !booted_through_uefi() {
        return Err(DeviceError::NotUefi);
    }
    sys::private_mounts().map_err(DeviceError::Namespace)?;
    let vars = Path::new(EFIVARS);
    let empty = std::fs::read_dir(vars).map_or(true, |mut d| d.next().is_none());
    if empty {
        let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        sys::mount(Path::new("efivarfs"), vars, "efivarfs", flags, "")
            .map_err(DeviceError::Efivarfs)?;
    }
    let info = efivars::loader_info(vars);
    let dev = find_esp(
        Path::new("/sys/block"),
        Path::new("/dev"),
        info.esp_partuuid.as_deref(),
    )?;
    let mnt = PathBuf::from(MOUNT_POINT);
    std::fs::create_dir_all(&mnt).map_err(|err| DeviceError::Mount {
        dev: dev.clone(),
        err,
    })?;
    // dirsync: a rename reaches the disk before rename(2) returns, in order.
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_DIRSYNC;
    sys::mount(&dev, &mnt, "vfat", flags, "umask=0077").map_err(|err| DeviceError::Mount {
        dev: dev.clone(),
        err,
    })?;
    Ok(Device {
        esp: Esp::new(mnt),
        info,
        esp_device: dev,
    })
}

impl Device {
    /// Unmount the ESP (flushes it). Also happens when the process exits.
    pub fn close(self) -> std::io::Result<()> {
        sys::umount(self.esp.root())
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The block device of the ESP: scan the GPT of every disk listed in `sys_block`
/// (`/sys/block`), each opened under `dev` (`/dev`).
fn find_esp(sys_block: &Path, dev: &Path, partuuid: Option<&str>) -> Result<PathBuf, DeviceError> {
    let disks = std::fs::read_dir(sys_block)
        .map_err(|e| DeviceError::NoEsp(format!("{}: {e}", sys_block.display())))?;
    let mut names: Vec<String> = disks
        .filter_map(|d| d.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram"))
        .collect();
    names.sort();
    let mut found = Vec::new();
    for disk in &names {
        let sys_dir = sys_block.join(disk);
        let sector = read_trim(&sys_dir.join("queue/logical_block_size"))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(512);
        let Ok(mut f) = File::open(dev.join(disk)) else {
            continue;
        };
        let Some(parts) = gpt::partitions(&mut f, sector) else {
            continue;
        };
        let Some(p) = gpt::pick_esp(&parts, partuuid) else {
            continue;
        };
        if let Some(device) = partition_device(&sys_dir, dev, p.number) {
            // By type: the first. By UUID: the only one, else we could pick another disk
            // than the one that booted.
            let Some(want) = partuuid else {
                return Ok(device);
            };
            found.push(device);
            if found.len() > 1 {
                return Err(DeviceError::SeveralEsps {
                    partuuid: want.to_string(),
                    devices: found,
                });
            }
        }
    }
    if let Some(device) = found.pop() {
        return Ok(device);
    }
    Err(DeviceError::NoEsp(match partuuid {
        Some(u) => format!("no partition with UUID {u} (LoaderDevicePartUUID) on {names:?}"),
        None => format!("no EFI System Partition on {names:?}"),
    }))
}

/// `<dev>/<name>` of partition `number` of the disk at `sys_dir`.
fn partition_device(sys_dir: &Path, dev: &Path, number: u32) -> Option<PathBuf> {
    let want = number.to_string();
    for child in std::fs::read_dir(sys_dir).ok()?.flatten() {
        let p = child.path();
        if read_trim(&p.join("partition")).as_deref() == Some(want.as_str()) {
            return Some(dev.join(child.file_name()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::tests::{disk_with, ESP_BYTES};

    /// A fake /sys/block and /dev: each disk holds one ESP with unique GUID `uuid`.
    fn disks(root: &Path, names: &[&str], uuid: [u8; 16]) -> (PathBuf, PathBuf) {
        let (sys, dev) = (root.join("sys/block"), root.join("dev"));
        std::fs::create_dir_all(&dev).unwrap();
        for name in names {
            let part = sys.join(name).join(format!("{name}1"));
            std::fs::create_dir_all(&part).unwrap();
            std::fs::write(part.join("partition"), "1\n").unwrap();
            std::fs::write(dev.join(name), disk_with(&[(ESP_BYTES, uuid)])).unwrap();
        }
        (sys, dev)
    }

    #[test]
    fn finds_the_esp_by_its_partuuid() {
        let d = tempfile::tempdir().unwrap();
        let (sys, dev) = disks(d.path(), &["vda"], [2; 16]);
        let uuid = gpt::guid_text(&[2; 16]);
        assert_eq!(find_esp(&sys, &dev, Some(&uuid)).unwrap(), dev.join("vda1"));
        assert_eq!(find_esp(&sys, &dev, None).unwrap(), dev.join("vda1"));
        assert!(find_esp(&sys, &dev, Some("nope")).is_err());
    }

    /// Two disks with the same partition UUID (an install stick written from the same image
    /// as the disk, or a stick that copies it): systemd-boot's LoaderDevicePartUUID cannot
    /// tell which one booted. find_esp took the first disk by name (sda before vda), so
    /// apply armed, and bless blessed, the stick's ESP while the machine boots the other:
    /// refused, naming both.
    #[test]
    fn a_partuuid_on_two_disks_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (sys, dev) = disks(d.path(), &["sda", "vda"], [2; 16]);
        let uuid = gpt::guid_text(&[2; 16]);
        let err = find_esp(&sys, &dev, Some(&uuid)).unwrap_err().to_string();
        assert!(err.contains("sda1") && err.contains("vda1"), "{err}");
        assert!(err.contains(&uuid), "{err}");
    }
}
