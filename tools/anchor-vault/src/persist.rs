// SPDX-License-Identifier: GPL-3.0-or-later
//! /persist itself: the filesystem inside the vault (ext4, made once at creation,
//! mounted nodev,nosuid,noexec) and the room volumes in it.
//!
//! A room volume is a sparse file `volumes/<name>.img` whose size is the policy's
//! quota: the room sees a disk of exactly that size and cannot write more. The sum of
//! all quotas never exceeds what the vault filesystem can hold (no overcommit), so a
//! room can always fill its quota. The host never mounts a volume: the room formats it
//! on first use and only the room's kernel ever parses what is inside. A volume grown
//! here (its quota grew) gets its file system grown by the side that mounts it, at the
//! room's next start (docs/ARCHITECTURE.md, "A quota that grows").

use core::fmt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anchor_policy::{vault, Name};
use anchor_proto::volume::{self as judge, Contents};

use crate::sys;

/// Where the vault is mounted.
pub const MOUNT_POINT: &str = "/persist";
/// The device-mapper name of the opened vault.
pub const MAPPER_NAME: &str = "anchor-vault";
/// Room volumes, relative to the mount point.
pub const VOLUMES: &str = "volumes";
/// Kept free for the audit log and the filesystem itself, beyond all quotas.
pub const RESERVE: u64 = 16 << 20;

/// What went wrong.
#[derive(Debug)]
pub enum PersistError {
    /// A file operation failed.
    Io(PathBuf, std::io::Error),
    /// mke2fs failed or could not run.
    Mkfs(String),
    /// Mounting the vault failed.
    Mount(PathBuf, std::io::Error),
    /// The volume name is not a valid name.
    BadName(String),
    /// Not enough room in the vault for the quota.
    NoRoom { name: String, size: u64, free: u64 },
    /// The existing volume is larger than the policy's quota now.
    Shrink { name: String, have: u64, want: u64 },
    /// /persist is not mounted.
    NotOpen,
    /// The volume's owner record names another top-level room than the one asking.
    Foreign {
        name: String,
        owner: String,
        family: String,
    },
    /// `volume give` or `volume delete` of a volume that is not there.
    NoVolume(String),
    /// `volume delete` of a volume a room has attached: who holds it.
    InUse { name: String, by: String },
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            PersistError::Mkfs(why) => write!(f, "making the vault filesystem: {why}"),
            PersistError::Mount(p, e) => write!(f, "mounting the vault on {}: {e}", p.display()),
            PersistError::BadName(why) => write!(f, "volume name: {why}"),
            PersistError::NoRoom { name, size, free } => write!(
                f,
                "volume {name}: its quota of {} MiB does not fit in the vault ({} MiB left \
                 after the other volumes' quotas)",
                size >> 20,
                free >> 20
            ),
            PersistError::Shrink { name, have, want } => write!(
                f,
                "volume {name} is {} MiB and the policy now says {} MiB: shrinking would \
                 destroy data, so it is kept as it is",
                have >> 20,
                want >> 20
            ),
            PersistError::NotOpen => f.write_str("the vault is not open (/persist is not mounted)"),
            PersistError::Foreign {
                name,
                owner,
                family,
            } => write!(
                f,
                "volume {name} belongs to room {owner}, not to {family}: kept as it is, for \
                 {owner} only (`anchor-vault volume give {name} --to {family}` hands it and its \
                 data over, `anchor-vault volume delete {name}` deletes it)"
            ),
            PersistError::NoVolume(name) => write!(f, "there is no volume {name}"),
            PersistError::InUse { name, by } => write!(
                f,
                "volume {name} is in use ({by}): close the room it is attached to, then \
                 delete it; nothing was deleted"
            ),
        }
    }
}

impl std::error::Error for PersistError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PersistError::Io(_, e) | PersistError::Mount(_, e) => Some(e),
            _ => None,
        }
    }
}

/// The mapper device of the opened vault.
pub fn mapper_path(name: &str) -> PathBuf {
    Path::new("/dev/mapper").join(name)
}

/// Find mke2fs: `explicit`, else the usual places.
pub fn find_mkfs(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    ["/usr/sbin/mke2fs", "/sbin/mke2fs", "/usr/bin/mke2fs"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Make the ext4 filesystem on `device` (only ever on a vault just created).
pub fn mkfs(mke2fs: &Path, device: &Path) -> Result<(), PersistError> {
    let out = Command::new(mke2fs)
        .args(["-q", "-F", "-t", "ext4", "-L", "persist", "-m", "0"])
        .arg(device)
        .output()
        .map_err(|e| PersistError::Mkfs(format!("{}: {e}", mke2fs.display())))?;
    if !out.status.success() {
        return Err(PersistError::Mkfs(format!(
            "{} {}: {}",
            mke2fs.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Mount `device` (ext4) on `target`, nodev,nosuid,noexec.
pub fn mount(device: &Path, target: &Path) -> Result<(), PersistError> {
    std::fs::create_dir_all(target).map_err(|e| PersistError::Io(target.to_path_buf(), e))?;
    let flags = libc::MS_NODEV | libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NOATIME;
    sys::mount(device, target, "ext4", flags, Some("errors=remount-ro"))
        .map_err(|e| PersistError::Mount(target.to_path_buf(), e))
}

/// Is the vault mounted at `target`?
pub fn is_open(target: &Path) -> bool {
    sys::is_mount_point(target).unwrap_or(false)
}

/// One room volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub path: PathBuf,
    /// Its quota (the size of the disk the room sees).
    pub size: u64,
    /// Bytes the vault filesystem spends on it now.
    pub used: u64,
}

/// The file of volume `name` under the vault at `root`.
pub fn volume_path(root: &Path, name: &str) -> Result<PathBuf, PersistError> {
    let name = Name::parse(name).map_err(PersistError::BadName)?;
    Ok(root.join(VOLUMES).join(format!("{}.img", name.as_str())))
}

/// Every volume under `root`, sorted by name.
pub fn volumes(root: &Path) -> Result<Vec<Volume>, PersistError> {
    let dir = root.join(VOLUMES);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PersistError::Io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PersistError::Io(dir.clone(), e))?;
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".img"))
            .filter(|n| Name::parse(n).is_ok())
            .map(str::to_owned)
        else {
            continue;
        };
        let meta = entry
            .metadata()
            .map_err(|e| PersistError::Io(path.clone(), e))?;
        out.push(Volume {
            name,
            size: meta.len(),
            used: meta.blocks().saturating_mul(512),
            path,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What [`ensure_volume`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Created,
    Grown,
    Existing,
    /// It was there without an owner record (made before records were kept, or by hand):
    /// now it is the family's that names it (and was, unchanged, otherwise as Existing).
    Adopted,
}

/// The vault's volume directory under `root`, made if missing.
fn volume_dir(root: &Path) -> Result<PathBuf, PersistError> {
    let dir = root.join(VOLUMES);
    std::fs::create_dir_all(&dir).map_err(|e| PersistError::Io(dir.clone(), e))?;
    Ok(dir)
}

/// [`ensure_volume`] for the rooms of top-level room `family`, who own the volume (its
/// owner record, `volumes/NAME.owner`, anchor-policy's `vault` module): a volume another
/// family owns is kept as it is and refused; one without a record is recorded as
/// `family`'s first (a new volume, or one made before records were kept).
pub fn ensure_owned(
    root: &Path,
    name: &Name,
    size: u64,
    family: &Name,
) -> Result<(PathBuf, Ensured), PersistError> {
    let dir = volume_dir(root)?;
    let record = vault::owner_path(&dir, name);
    let exists = std::fs::symlink_metadata(vault::image_path(&dir, name)).is_ok();
    let owner = vault::read_owner(&dir, name).map_err(|e| PersistError::Io(record.clone(), e))?;
    let adopted = match owner {
        Some(owner) if owner == *family => false,
        Some(owner) if exists => {
            return Err(PersistError::Foreign {
                name: name.to_string(),
                owner: owner.to_string(),
                family: family.to_string(),
            })
        }
        // A record left by a volume deleted by hand, or none: the family's now.
        _ => {
            vault::write_owner(&dir, name, family).map_err(|e| PersistError::Io(record, e))?;
            exists
        }
    };
    let (path, how) = ensure_volume(root, name.as_str(), size)?;
    Ok((path, if adopted { Ensured::Adopted } else { how }))
}

/// `volume give NAME --to ROOM`: the volume is `to`'s family's from now on (its old
/// owner's rooms no longer get it); the old owner, if it had one.
pub fn give(root: &Path, name: &Name, to: &Name) -> Result<Option<Name>, PersistError> {
    let dir = root.join(VOLUMES);
    let image = vault::image_path(&dir, name);
    if !std::fs::symlink_metadata(&image).is_ok_and(|m| m.is_file()) {
        return Err(PersistError::NoVolume(name.to_string()));
    }
    let record = vault::owner_path(&dir, name);
    // An unreadable record is replaced: saying who owns it is what `give` is for.
    let old = vault::read_owner(&dir, name).ok().flatten();
    vault::write_owner(&dir, name, to).map_err(|e| PersistError::Io(record, e))?;
    Ok(old)
}

/// `volume delete NAME`: the volume file (its data) and its owner record go, unless a
/// room has it attached (a process has it open or a loop device is backed by it).
///
/// The check and the unlink are one step against a room starting at the same moment: the
/// volume's lock is `flock` on its file, which a room's VMM and anchor-jail hold shared from
/// the moment they open it (before they check what they opened) for as long as they serve
/// it. `delete` holds it exclusively from before its check until the file is gone, so a
/// room either has it (the lock is refused: nothing is deleted) or finds it gone or being
/// deleted (the room refuses to start with it).
pub fn delete(root: &Path, name: &Name) -> Result<(), PersistError> {
    let dir = root.join(VOLUMES);
    let image = vault::image_path(&dir, name);
    let lock = match std::fs::symlink_metadata(&image) {
        Ok(m) if m.is_file() => Some(lock_for_delete(&image, name)?),
        // Something else at its name (no room attaches anything but a regular file,
        // reached without following a link) is only removed.
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PersistError::NoVolume(name.to_string()))
        }
        Err(e) => return Err(PersistError::Io(image, e)),
    };
    match std::fs::remove_file(&image) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PersistError::NoVolume(name.to_string()))
        }
        Err(e) => return Err(PersistError::Io(image, e)),
    }
    let record = vault::owner_path(&dir, name);
    let done = match std::fs::remove_file(&record) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PersistError::Io(record, e)),
        _ => std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| PersistError::Io(dir, e)),
    };
    // The lock goes with the file, once its name is gone.
    drop(lock);
    done
}

/// The volume file `image`, locked exclusively, once nothing holds it: the name still
/// holds the file that was locked, and no process (but this one's lock) has it open and no
/// loop device is backed by it.
fn lock_for_delete(image: &Path, name: &Name) -> Result<std::fs::File, PersistError> {
    use std::os::fd::AsRawFd;
    let in_use = |by: &str| PersistError::InUse {
        name: name.to_string(),
        by: by.to_owned(),
    };
    let io = |e| PersistError::Io(image.to_path_buf(), e);
    let file = match open_nofollow(image) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PersistError::NoVolume(name.to_string()))
        }
        Err(e) => return Err(io(e)),
    };
    let held = file.metadata().map_err(io)?;
    if !anchor_sys::audit::try_flock(&file, false).map_err(io)? {
        return Err(in_use("a room is attaching it or has it attached"));
    }
    // Under the lock: a volume deleted and made again in between is another file.
    match std::fs::symlink_metadata(image) {
        Ok(m) if (m.dev(), m.ino()) == (held.dev(), held.ino()) => {}
        Ok(_) => return Err(in_use("it was replaced while it was being deleted")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PersistError::NoVolume(name.to_string()))
        }
        Err(e) => return Err(io(e)),
    }
    // Holders that take no lock (a program or a loop device set up by hand).
    let by = crate::holders::holder(held.dev(), held.ino(), Some(file.as_raw_fd())).map_err(io)?;
    match by {
        Some(by) => Err(in_use(&by)),
        None => Ok(file),
    }
}

/// Opens `path` read-only, never through a symbolic link, never blocking (a FIFO put in
/// its place).
fn open_nofollow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// Make sure volume `name` exists under `root` (the vault's mount point: callers check
/// it is open) with quota `size`: created sparse, or grown; never shrunk. Refuses when
/// the quotas would not fit in the vault.
pub fn ensure_volume(
    root: &Path,
    name: &str,
    size: u64,
) -> Result<(PathBuf, Ensured), PersistError> {
    let path = volume_path(root, name)?;
    let all = volumes(root)?;
    let have = all.iter().find(|v| v.name == name).map(|v| v.size);
    if let Some(have) = have {
        if have > size {
            return Err(PersistError::Shrink {
                name: name.to_owned(),
                have,
                want: size,
            });
        }
        if have == size {
            return Ok((path, Ensured::Existing));
        }
    }
    let space = sys::fs_space(root).map_err(|e| PersistError::Io(root.to_path_buf(), e))?;
    let others: u64 = all.iter().filter(|v| v.name != name).map(|v| v.size).sum();
    let free = space.total.saturating_sub(RESERVE).saturating_sub(others);
    if size > free {
        return Err(PersistError::NoRoom {
            name: name.to_owned(),
            size,
            free,
        });
    }
    let dir = root.join(VOLUMES);
    std::fs::create_dir_all(&dir).map_err(|e| PersistError::Io(dir.clone(), e))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        // A symlink in place of the volume is refused (ELOOP): its target is not ours
        // to resize, and bay0 would not grant it to a room anyway. O_NONBLOCK: a FIFO
        // in its place must be refused, not waited on (a blocking open waits for a
        // reader for ever); only a regular file is a volume.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path)
        .map_err(|e| PersistError::Io(path.clone(), not_regular_if_fifo(e)))?;
    let meta = file
        .metadata()
        .map_err(|e| PersistError::Io(path.clone(), e))?;
    if !meta.is_file() {
        return Err(PersistError::Io(path, not_regular()));
    }
    // A first format cut short (anchor-proto `volume`: its mark in the last block) stays
    // one after growing: the mark goes to the new last block, where the room's side looks
    // for it, or the volume would be judged "something else" and refused for good.
    let unfinished = have.is_some()
        && judge::judge_volume(&file).map_err(|e| PersistError::Io(path.clone(), e))?
            == Contents::Unfinished;
    file.set_len(size)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            if unfinished {
                judge::set_mark(&file, true)
            } else {
                Ok(())
            }
        })
        .map_err(|e| PersistError::Io(path.clone(), e))?;
    Ok((
        path,
        if have.is_some() {
            Ensured::Grown
        } else {
            Ensured::Created
        },
    ))
}

fn not_regular() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")
}

/// ENXIO is what a non-blocking write open of a FIFO without a reader says; EISDIR a
/// directory's: both are "not a regular file" to the reader of the error.
fn not_regular_if_fifo(e: std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(libc::ENXIO | libc::EISDIR) => not_regular(),
        _ => e,
    }
}

/// Make the volumes the policies in `dir` ask for, each once with the largest quota any
/// policy gives it (a nested room shares its parent's volume with a smaller size). Each
/// problem is returned with the policy file it came from and does not stop the others.
/// A policy that does not load makes nothing: one whose volume an unrelated policy names
/// too (anchor-policy refuses both, docs/POLICY.md "`[persist]`") gets no volume made.
/// A directory that cannot be listed is one problem; one that does not exist makes nothing.
pub fn ensure_for_policies(root: &Path, dir: &Path) -> Vec<Result<(String, Ensured), String>> {
    let mut out = Vec::new();
    // Each file read and parsed once for the whole directory (a file-by-file load reads
    // every other file again for its volume check: quadratic in the number of policies).
    let files = match anchor_policy::load_dir(dir) {
        Ok(files) => files,
        // No policy directory: no room, so no volume to make.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.push(Err(format!("{}: cannot be listed: {e}", dir.display())));
            return out;
        }
    };
    // volume -> (largest quota, the policy file that asks for it, the family owning it)
    let mut wanted: std::collections::BTreeMap<Name, (u64, PathBuf, Name)> = Default::default();
    for (file, loaded) in files {
        let resolved = match loaded {
            Ok(r) => r,
            // A problem names its own file first; another file's (a parent's) is said
            // after the policy's.
            Err(e) => {
                let label = anchor_policy::file_label(&file);
                out.push(Err(match e.problems().first() {
                    Some(p) if p.file_name() == label => p.to_string(),
                    Some(p) => format!("{label}: {p}"),
                    None => label,
                }));
                continue;
            }
        };
        let Some(persist) = resolved.policy().persist() else {
            continue;
        };
        let size = persist.size().bytes();
        // One family per volume: anchor-policy refused the policies of any other.
        let family = vault::family(&resolved).clone();
        let entry = wanted
            .entry(persist.volume().clone())
            .or_insert((0, file.clone(), family));
        if size > entry.0 {
            (entry.0, entry.1) = (size, file);
        }
    }
    for (name, (size, file, family)) in wanted {
        out.push(
            ensure_owned(root, &name, size, &family)
                .map(|(_, how)| (name.to_string(), how))
                .map_err(|e| format!("{}: {e}", file.display())),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileExt, FileTypeExt};

    #[test]
    fn volumes_are_sparse_quota_sized_and_never_shrink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (p, how) = ensure_volume(root, "work", 64 << 20).unwrap();
        assert_eq!(how, Ensured::Created);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 64 << 20);
        assert_eq!(
            ensure_volume(root, "work", 64 << 20).unwrap().1,
            Ensured::Existing
        );
        assert_eq!(
            ensure_volume(root, "work", 128 << 20).unwrap().1,
            Ensured::Grown
        );
        assert!(matches!(
            ensure_volume(root, "work", 1 << 20),
            Err(PersistError::Shrink { .. })
        ));
        let v = volumes(root).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].name.as_str(), v[0].size), ("work", 128 << 20));
        assert!(v[0].used < 1 << 20, "sparse: {} bytes used", v[0].used);
        assert!(matches!(
            ensure_volume(root, "../etc", 1 << 20),
            Err(PersistError::BadName(_))
        ));
    }

    /// A volume whose first format was cut short (the mark in its last block) and whose
    /// quota then grew is still told apart as a format cut short, formatted again at the
    /// room's next start: the mark moves to the new last block. It stayed at the old one,
    /// and the grown volume was judged "something else", refused by the room for good.
    #[test]
    fn a_format_cut_short_stays_one_when_the_volume_grows() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (p, _) = ensure_volume(root, "work", 8 << 20).unwrap();
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .unwrap()
        };
        judge::set_mark(&open(), true).unwrap();
        open().write_all_at(&[1u8; 4096], 4096).unwrap(); // what mke2fs wrote before
        assert_eq!(judge::judge_volume(&open()).unwrap(), Contents::Unfinished);
        assert_eq!(
            ensure_volume(root, "work", 16 << 20).unwrap().1,
            Ensured::Grown
        );
        assert_eq!(judge::judge_volume(&open()).unwrap(), Contents::Unfinished);
        // Anything else grows as it is, no mark added.
        let (q, _) = ensure_volume(root, "other", 8 << 20).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&q)
            .unwrap()
            .write_all_at(&[1u8; 4096], 4096)
            .unwrap();
        ensure_volume(root, "other", 16 << 20).unwrap();
        let f = std::fs::File::open(&q).unwrap();
        assert_eq!(judge::judge_volume(&f).unwrap(), Contents::Other);
        assert!(!judge::is_marked(&f).unwrap());
    }

    /// A volume file that is a FIFO is refused as not a regular file, never opened for
    /// writing: a blocking open would wait for a reader for ever (the unlock dialog makes
    /// the policies' volumes: boot hung). The test holds a reader open so that the old
    /// blocking open returns and the test fails instead of hanging.
    #[test]
    fn a_volume_file_that_is_a_fifo_is_refused_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let vols = root.join(VOLUMES);
        std::fs::create_dir_all(&vols).unwrap();
        let fifo = vols.join("work.img");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let refused = |name: &str| {
            let e = ensure_volume(root, name, 1 << 20).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{name}.img")) && e.contains("not a regular file"),
                "{e}"
            );
        };
        refused("work");
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        // Without a reader (at boot, nobody reads it) it is refused too, not waited on.
        drop(reader);
        refused("work");
        // A directory in its place is refused the same way.
        std::fs::create_dir(vols.join("dir.img")).unwrap();
        refused("dir");
    }

    #[test]
    fn quotas_never_overcommit_the_vault() {
        let dir = tempfile::tempdir().unwrap();
        let space = sys::fs_space(dir.path()).unwrap();
        let e = ensure_volume(dir.path(), "huge", space.total).unwrap_err();
        assert!(matches!(e, PersistError::NoRoom { .. }), "{e}");
        assert!(e.to_string().contains("does not fit"), "{e}");
    }

    #[test]
    fn a_nested_room_shares_its_parents_volume_at_the_parents_size() {
        let dir = tempfile::tempdir().unwrap();
        let pol = dir.path().join("policies");
        std::fs::create_dir_all(&pol).unwrap();
        let room = |name: &str, parent: Option<&str>, size: &str| {
            let parent = parent
                .map(|p| format!("parent = \"{p}\"\n"))
                .unwrap_or_default();
            format!(
                "name = \"{name}\"\n{parent}image = \"work\"\nbackend = \"microvm\"\n\
                 [resources]\nmemory = \"512MiB\"\nvcpus = 1\n\
                 [persist]\nvolume = \"shared\"\nsize = \"{size}\"\n{}",
                if parent.is_empty() {
                    "[nesting]\nallowed = true\nmax_children = 1\nmemory = \"512MiB\"\nvcpus = 1\npids_max = 512\n"
                } else {
                    ""
                }
            )
        };
        std::fs::write(pol.join("a.toml"), room("a", None, "64MiB")).unwrap();
        std::fs::write(pol.join("b.toml"), room("b", Some("a"), "16MiB")).unwrap();
        let root = dir.path().join("vault");
        std::fs::create_dir_all(&root).unwrap();
        let r = ensure_for_policies(&root, &pol);
        assert_eq!(
            r,
            vec![Ok(("shared".to_owned(), Ensured::Created))],
            "{r:?}"
        );
        assert_eq!(volumes(&root).unwrap()[0].size, 64 << 20);
    }

    /// Two unrelated policies naming one volume would hand its data from one room to the
    /// other across boots, outside the courier: neither gets it, the volume is not made
    /// (nor anything under its name), and each refusal is one line naming both files and
    /// the volume. A room with a volume of its own still gets it.
    #[test]
    fn unrelated_policies_naming_one_volume_get_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let pol = dir.path().join("policies");
        std::fs::create_dir_all(&pol).unwrap();
        let room = |name: &str, volume: &str| {
            let text = format!(
                "name = \"{name}\"\nimage = \"work\"\nbackend = \"microvm\"\n\
                 [resources]\nmemory = \"512MiB\"\nvcpus = 1\n\
                 [persist]\nvolume = \"{volume}\"\nsize = \"16MiB\"\n"
            );
            let path = pol.join(format!("{name}.toml"));
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (a, b) = (room("a", "shared"), room("b", "shared"));
        room("c", "own");
        let root = dir.path().join("vault");
        std::fs::create_dir_all(&root).unwrap();
        let r = ensure_for_policies(&root, &pol);
        let refused: Vec<&String> = r.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(refused.len(), 2, "{r:?}");
        for (e, (file, other)) in refused.iter().zip([(&a, &b), (&b, &a)]) {
            assert!(
                e.starts_with(&format!("{file}:"))
                    && e.contains("\"shared\"")
                    && e.contains(other.as_str())
                    && !e.contains('\n'),
                "{e}"
            );
            assert_eq!(e.matches(file.as_str()).count(), 1, "{e}");
        }
        assert!(
            r.contains(&Ok(("own".to_owned(), Ensured::Created))),
            "{r:?}"
        );
        let names: Vec<String> = volumes(&root)
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["own"]);
        assert!(!root.join(VOLUMES).join("shared.img").exists());
    }

    /// A top-level room with a volume, in `pol`.
    fn keeper(pol: &Path, name: &str, volume: &str) {
        let text = format!(
            "name = \"{name}\"\nimage = \"work\"\nbackend = \"microvm\"\n\
             [resources]\nmemory = \"512MiB\"\nvcpus = 1\n\
             [persist]\nvolume = \"{volume}\"\nsize = \"16MiB\"\n"
        );
        std::fs::write(pol.join(format!("{name}.toml")), text).unwrap();
    }

    /// An update removes room `old` (its policy) and adds room `diary`, whose policy names
    /// the volume `old` left in the vault: `diary` got `old`'s data. Now the volume is kept
    /// as it is, for `old`'s family only, and the unlock says so in one line naming the
    /// policy, the volume, its owner and how to hand it over or delete it.
    #[test]
    fn a_volume_an_update_left_behind_is_not_made_for_a_new_room() {
        let dir = tempfile::tempdir().unwrap();
        let pol = dir.path().join("policies");
        std::fs::create_dir_all(&pol).unwrap();
        let root = dir.path().join("vault");
        std::fs::create_dir_all(&root).unwrap();
        keeper(&pol, "old", "notes");
        let r = ensure_for_policies(&root, &pol);
        assert_eq!(r, vec![Ok(("notes".to_owned(), Ensured::Created))]);
        let img = root.join(VOLUMES).join("notes.img");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&img)
            .unwrap()
            .write_all_at(b"old's secret", 0)
            .unwrap();
        std::fs::remove_file(pol.join("old.toml")).unwrap();
        keeper(&pol, "diary", "notes");
        let r = ensure_for_policies(&root, &pol);
        assert_eq!(r.len(), 1, "{r:?}");
        let e = r[0].as_ref().unwrap_err();
        let diary = pol.join("diary.toml").display().to_string();
        assert!(
            e.starts_with(&format!(
                "{diary}: volume notes belongs to room old, not to diary"
            )) && e.contains("`anchor-vault volume give notes --to diary`")
                && e.contains("`anchor-vault volume delete notes`")
                && !e.contains('\n'),
            "{e}"
        );
        assert_eq!(&std::fs::read(&img).unwrap()[..12], b"old's secret");
    }

    /// A volume a room has attached is not deleted: not while a process has it open (a
    /// microVM room's VMM), not while a loop device is backed by it (a namespace room's
    /// mount); the error names the holder. Once let go, it deletes.
    #[test]
    fn a_volume_in_use_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vault");
        let n = Name::parse("notes").unwrap();
        let (path, _) = ensure_owned(&root, &n, 16 << 20, &n).unwrap();
        let open = std::fs::File::open(&path).unwrap();
        let e = delete(&root, &n).unwrap_err().to_string();
        let me = format!("process {} (", std::process::id());
        assert!(
            e.contains("volume notes is in use") && e.contains(&me),
            "{e}"
        );
        assert!(e.contains("nothing was deleted"), "{e}");
        assert!(
            path.exists()
                && vault::read_owner(&root.join(VOLUMES), &n)
                    .unwrap()
                    .is_some()
        );
        drop(open);
        // A loop device backed by it, no process holding the file.
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup: {out:?}");
        let device = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let refused = delete(&root, &n);
        let detached = std::process::Command::new("losetup")
            .args(["--detach", &device])
            .status()
            .unwrap();
        let e = refused.unwrap_err().to_string();
        assert!(
            e.contains(&format!("loop device {device} is backed by it")),
            "{e}"
        );
        assert!(detached.success() && path.exists());
        delete(&root, &n).unwrap();
        assert!(!path.exists());
    }

    /// A room holds its volume's lock (shared) from the moment it opens the file: delete
    /// refuses while it does and says so; the lock it takes itself stops a room from
    /// attaching the volume while it deletes it (anchor-jail's and the VMM's tests).
    #[test]
    fn a_volume_whose_lock_a_room_holds_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vault");
        let n = Name::parse("notes").unwrap();
        let (path, _) = ensure_owned(&root, &n, 16 << 20, &n).unwrap();
        let room = std::fs::File::open(&path).unwrap();
        assert!(anchor_sys::audit::try_flock(&room, true).unwrap());
        let e = delete(&root, &n).unwrap_err().to_string();
        assert!(
            e.contains("volume notes is in use (a room is attaching it or has it attached)"),
            "{e}"
        );
        assert!(path.exists());
        drop(room);
        // A symbolic link at a volume's name is removed, never followed (its target stays).
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let again = Name::parse("other").unwrap();
        let link = vault::image_path(&root.join(VOLUMES), &again);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        delete(&root, &again).unwrap();
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        // Our own lock does not count as a holder.
        delete(&root, &n).unwrap();
        assert!(!path.exists());
    }

    /// `give` hands a volume over (the new family's from then on, the old one's no more);
    /// `delete` removes it with its record; a volume without a record (made before records
    /// were kept) is adopted by the family whose policy names it, and said.
    #[test]
    fn volumes_are_handed_over_deleted_or_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let pol = dir.path().join("policies");
        std::fs::create_dir_all(&pol).unwrap();
        let root = dir.path().join("vault");
        let n = |s: &str| Name::parse(s).unwrap();
        ensure_owned(&root, &n("notes"), 16 << 20, &n("old")).unwrap();
        keeper(&pol, "diary", "notes");
        assert!(ensure_for_policies(&root, &pol)[0].is_err());
        assert_eq!(
            give(&root, &n("notes"), &n("diary")).unwrap(),
            Some(n("old"))
        );
        let r = ensure_for_policies(&root, &pol);
        assert_eq!(r, vec![Ok(("notes".to_owned(), Ensured::Existing))]);
        assert!(matches!(
            ensure_owned(&root, &n("notes"), 16 << 20, &n("old")),
            Err(PersistError::Foreign { .. })
        ));
        delete(&root, &n("notes")).unwrap();
        assert!(std::fs::read_dir(root.join(VOLUMES))
            .unwrap()
            .next()
            .is_none());
        assert!(matches!(
            give(&root, &n("notes"), &n("diary")),
            Err(PersistError::NoVolume(_))
        ));
        assert!(matches!(
            delete(&root, &n("notes")),
            Err(PersistError::NoVolume(_))
        ));
        // Made before owner records were kept: the family naming it adopts it, once.
        ensure_volume(&root, "notes", 16 << 20).unwrap();
        let r = ensure_for_policies(&root, &pol);
        assert_eq!(r, vec![Ok(("notes".to_owned(), Ensured::Adopted))]);
        let r = ensure_for_policies(&root, &pol);
        assert_eq!(r, vec![Ok(("notes".to_owned(), Ensured::Existing))]);
        let dir = root.join(VOLUMES);
        assert_eq!(
            vault::read_owner(&dir, &n("notes")).unwrap(),
            Some(n("diary"))
        );
    }

    /// A policy directory that cannot be listed is said (it was passed over in silence);
    /// one that is not there holds no room and makes nothing.
    #[test]
    fn a_policy_directory_that_cannot_be_listed_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("policies");
        std::fs::write(&not_a_dir, b"").unwrap();
        let r = ensure_for_policies(dir.path(), &not_a_dir);
        assert_eq!(r.len(), 1, "{r:?}");
        let e = r[0].as_ref().unwrap_err();
        assert!(
            e.starts_with(&format!("{}: cannot be listed", not_a_dir.display())),
            "{e}"
        );
        assert_eq!(
            ensure_for_policies(dir.path(), &dir.path().join("none")),
            vec![]
        );
    }

    #[test]
    fn policies_with_persist_get_their_volume() {
        let dir = tempfile::tempdir().unwrap();
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let results = ensure_for_policies(dir.path(), &policies);
        // work.toml asks for 8GiB: on a small test filesystem it may not fit; either
        // way the answer names the policy and the volume.
        assert!(!results.is_empty());
        for r in &results {
            match r {
                Ok((name, _)) => assert!(!name.is_empty()),
                Err(e) => assert!(e.contains(".toml: volume "), "{e}"),
            }
        }
    }
}
