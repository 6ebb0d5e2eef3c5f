// SPDX-License-Identifier: GPL-3.0-or-later
//! The ESP as a directory (mounted on the device, or any directory for offline use and
//! tests): which files hold which slot, their versions, leftovers; durable renames.

use crate::osrel::{self, OsRelError};
use crate::pe::{self, PeError};
use crate::slots::{Counter, EntryName, Slot, ENTRY_DIR};
use crate::version::Version;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// An ESP operation that failed, with the file it concerned.
#[derive(Debug)]
pub enum EspError {
    Io {
        op: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    /// A slot file that is not a readable Anchor OS UKI.
    Image { path: PathBuf, what: String },
}

impl fmt::Display for EspError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EspError::Io { op, path, err } => write!(f, "{op} {}: {err}", path.display()),
            EspError::Image { path, what } => write!(f, "{}: {what}", path.display()),
        }
    }
}

impl std::error::Error for EspError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EspError::Io { err, .. } => Some(err),
            EspError::Image { .. } => None,
        }
    }
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> EspError + 'a {
    move |err| EspError::Io {
        op,
        path: path.to_path_buf(),
        err,
    }
}

/// One slot file found on the ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotFile {
    pub file: String,
    pub entry: EntryName,
}

/// What the ESP holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EspState {
    /// Files of slot A and of slot B (normally at most one each).
    pub a: Vec<SlotFile>,
    pub b: Vec<SlotFile>,
    /// Updates being written (`anchor-X.efi.new`): leftovers of an interrupted apply.
    pub temps: Vec<String>,
}

impl EspState {
    pub fn files(&self, slot: Slot) -> &[SlotFile] {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }

    /// The slot's file, when it has exactly one.
    pub fn single(&self, slot: Slot) -> Option<&SlotFile> {
        match self.files(slot) {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// An ESP rooted at a directory.
#[derive(Debug, Clone)]
pub struct Esp {
    root: PathBuf,
}

impl Esp {
    pub fn new(root: impl Into<PathBuf>) -> Esp {
        Esp { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `EFI/Linux` under the root.
    pub fn entry_dir(&self) -> PathBuf {
        self.root.join(ENTRY_DIR)
    }

    /// Path of a file in the entry directory.
    pub fn entry_path(&self, file: &str) -> PathBuf {
        self.entry_dir().join(file)
    }

    /// List the slots and leftovers.
    pub fn scan(&self) -> Result<EspState, EspError> {
        let dir = self.entry_dir();
        let mut state = EspState::default();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(state),
            Err(e) => return Err(io_err("read", &dir)(e)),
        };
        for item in rd {
            let item = item.map_err(io_err("read", &dir))?;
            let Ok(name) = item.file_name().into_string() else {
                continue;
            };
            if let Some(entry) = EntryName::parse(&name) {
                let f = SlotFile { file: name, entry };
                match entry.slot {
                    Slot::A => state.a.push(f),
                    Slot::B => state.b.push(f),
                }
            } else if Slot::ALL.iter().any(|s| s.temp_name() == name) {
                state.temps.push(name);
            }
        }
        state.a.sort_by(|x, y| x.file.cmp(&y.file));
        state.b.sort_by(|x, y| x.file.cmp(&y.file));
        state.temps.sort();
        Ok(state)
    }

    /// The IMAGE_VERSION of a slot file (reads the file).
    pub fn version_of(&self, file: &str) -> Result<Version, EspError> {
        let path = self.entry_path(file);
        let bytes = read_slot_file(&path)?;
        image_version(&bytes).map_err(|what| EspError::Image { path, what })
    }

    /// Rename within the entry directory and make it durable.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), EspError> {
        let (a, b) = (self.entry_path(from), self.entry_path(to));
        std::fs::rename(&a, &b).map_err(io_err("rename", &a))?;
        self.sync_dir()
    }

    /// Remove a file from the entry directory (durably).
    pub fn remove(&self, file: &str) -> Result<(), EspError> {
        let p = self.entry_path(file);
        std::fs::remove_file(&p).map_err(io_err("remove", &p))?;
        self.sync_dir()
    }

    /// An exclusive lock on the ESP (flock on its root directory), held while the
    /// returned file is open; None when another process holds it.
    pub fn lock(&self) -> Result<Option<File>, EspError> {
        let f = File::open(&self.root).map_err(io_err("open", &self.root))?;
        let locked = crate::sys::try_lock_exclusive(&f).map_err(io_err("lock", &self.root))?;
        Ok(locked.then_some(f))
    }

    /// fsync the entry directory.
    pub fn sync_dir(&self) -> Result<(), EspError> {
        let dir = self.entry_dir();
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync", &dir))
    }
}

/// The bytes of the regular file at `path`, at most `limit` of them. What is there is
/// not trusted: a FIFO is refused rather than waited on (O_NONBLOCK open, then only a
/// regular file is read), and a file that is, or grows, longer than `limit` is refused.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let too_long = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than the {limit} bytes expected"),
        )
    };
    if meta.len() > limit {
        return Err(too_long());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_long());
    }
    Ok(bytes)
}

/// The bytes of a file in the entry directory: a regular file of at most
/// [`crate::apply::MAX_IMAGE`] bytes (a slot holds no more), see [`read_regular`].
pub fn read_slot_file(path: &Path) -> Result<Vec<u8>, EspError> {
    read_regular(path, crate::apply::MAX_IMAGE).map_err(io_err("read", path))
}

/// Why an image has no usable version.
fn version_error(e: PeError) -> String {
    e.to_string()
}

/// The Anchor OS version a UKI's `.osrel` declares.
pub fn image_version(image: &[u8]) -> Result<Version, String> {
    let osrel = pe::section(image, ".osrel")
        .map_err(version_error)?
        .ok_or_else(|| "no .osrel section (not a UKI)".to_string())?;
    osrel::anchor_version(osrel).map_err(|e: OsRelError| e.to_string())
}

/// The boot entry systemd-boot will pick among `candidates` (slot, counter, version):
/// entries with tries left before those without, then the highest version. Only images
/// whose version reads are candidates: systemd-boot lists no image whose `.osrel` it
/// cannot read.
pub fn next_boot(candidates: &[(Slot, Counter, Version)]) -> Option<Slot> {
    candidates
        .iter()
        .min_by(|x, y| {
            x.1.is_bad()
                .cmp(&y.1.is_bad())
                .then_with(|| y.2.cmp(&x.2))
                .then_with(|| x.0.cmp(&y.0))
        })
        .map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_sorts_files_into_slots_and_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let esp = Esp::new(d.path());
        assert_eq!(esp.scan().unwrap(), EspState::default());
        std::fs::create_dir_all(esp.entry_dir()).unwrap();
        for f in [
            "anchor-A.efi",
            "anchor-B+2-1.efi",
            "anchor-B.efi.new",
            "other.efi",
        ] {
            std::fs::write(esp.entry_path(f), b"x").unwrap();
        }
        let s = esp.scan().unwrap();
        assert_eq!(s.single(Slot::A).unwrap().file, "anchor-A.efi");
        assert_eq!(
            s.single(Slot::B).unwrap().entry.counter,
            Counter::Counting { left: 2, done: 1 }
        );
        assert_eq!(s.temps, vec!["anchor-B.efi.new".to_string()]);
        esp.rename("anchor-B+2-1.efi", "anchor-B.efi").unwrap();
        assert_eq!(
            esp.scan().unwrap().single(Slot::B).unwrap().entry.counter,
            Counter::Good
        );
    }

    #[test]
    fn next_boot_prefers_tries_left_then_the_newest() {
        let v = |s: &str| Version::parse(s).unwrap();
        let trying = Counter::Counting { left: 2, done: 1 };
        let bad = Counter::Counting { left: 0, done: 3 };
        assert_eq!(
            next_boot(&[(Slot::A, Counter::Good, v("1")), (Slot::B, trying, v("2"))]),
            Some(Slot::B)
        );
        assert_eq!(
            next_boot(&[(Slot::A, Counter::Good, v("1")), (Slot::B, bad, v("2"))]),
            Some(Slot::A)
        );
        assert_eq!(
            next_boot(&[(Slot::A, bad, v("1")), (Slot::B, bad, v("2"))]),
            Some(Slot::B)
        );
        assert_eq!(next_boot(&[]), None);
    }
}
