// SPDX-License-Identifier: GPL-3.0-or-later
//! systemd-boot's loader variables, read from efivarfs: which entry booted
//! (`LoaderEntrySelected`), the path of its boot-counted file after the decrement
//! (`LoaderBootCountPath`), and the ESP's GPT partition UUID (`LoaderDevicePartUUID`).
//! A file in efivarfs is 4 bytes of attributes and the value (here UTF-16LE text).

use crate::slots::{entry_from_loader_path, EntryName};
use std::path::Path;

/// The Boot Loader Interface vendor GUID.
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// Where efivarfs is mounted.
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";

/// UTF-16LE text of an efivarfs file's bytes (attributes skipped, up to the first NUL).
pub fn decode(raw: &[u8]) -> Option<String> {
    let body = raw.get(4..)?;
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

/// A loader variable's text, if set.
pub fn read(dir: &Path, name: &str) -> Option<String> {
    let raw = std::fs::read(dir.join(format!("{name}-{LOADER_GUID}"))).ok()?;
    decode(&raw)
}

/// What systemd-boot told us about this boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoaderInfo {
    /// The slot entry that booted, with its counter after systemd-boot's decrement.
    pub booted: Option<EntryName>,
    /// The ESP's partition UUID (lower case).
    pub esp_partuuid: Option<String>,
    /// The raw values, for messages.
    pub selected: Option<String>,
    pub count_path: Option<String>,
}

/// Read the loader variables under `dir` (normally [`EFIVARS`]).
pub fn loader_info(dir: &Path) -> LoaderInfo {
    let count_path = read(dir, "LoaderBootCountPath");
    let selected = read(dir, "LoaderEntrySelected");
    // The boot-count path carries the counter; the selected id may not.
    let booted = count_path
        .as_deref()
        .and_then(entry_from_loader_path)
        .or_else(|| selected.as_deref().and_then(entry_from_loader_path));
    LoaderInfo {
        booted,
        esp_partuuid: read(dir, "LoaderDevicePartUUID").map(|s| s.to_ascii_lowercase()),
        selected,
        count_path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::{Counter, Slot};

    fn var(text: &str) -> Vec<u8> {
        let mut v = vec![7, 0, 0, 0];
        for u in text.encode_utf16() {
            v.extend_from_slice(&u.to_le_bytes());
        }
        v.extend_from_slice(&[0, 0]);
        v
    }

    #[test]
    fn decodes_utf16_and_reads_the_loader_variables() {
        assert_eq!(
            decode(&var("anchor-b.efi")).as_deref(),
            Some("anchor-b.efi")
        );
        assert_eq!(decode(&[1, 2]), None);
        let d = tempfile::tempdir().unwrap();
        let put = |n: &str, t: &str| {
            std::fs::write(d.path().join(format!("{n}-{LOADER_GUID}")), var(t)).unwrap()
        };
        put("LoaderEntrySelected", "anchor-b.efi");
        put("LoaderBootCountPath", "\\EFI\\Linux\\anchor-B+2-1.efi");
        put(
            "LoaderDevicePartUUID",
            "8C8F8B4E-0000-4000-8000-000000000001",
        );
        let info = loader_info(d.path());
        let booted = info.booted.unwrap();
        assert_eq!(booted.slot, Slot::B);
        assert_eq!(booted.counter, Counter::Counting { left: 2, done: 1 });
        assert_eq!(
            info.esp_partuuid.as_deref(),
            Some("8c8f8b4e-0000-4000-8000-000000000001")
        );
        assert_eq!(
            loader_info(Path::new("/nonexistent")),
            LoaderInfo::default()
        );
    }
}
