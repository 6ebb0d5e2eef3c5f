// SPDX-License-Identifier: GPL-3.0-or-later
//! Finding the ESP: the GPT partition whose unique GUID systemd-boot reported
//! (`LoaderDevicePartUUID`), or else the first partition of the EFI System type. Linux does
//! not expose partition UUIDs in sysfs, so the partition table is read here. Disk contents
//! are untrusted input: every field is bounds-checked and counts are capped.

use std::io::{Read, Seek, SeekFrom};

/// The EFI System Partition type GUID, as text.
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

/// At most this many partition entries are read.
const MAX_ENTRIES: u32 = 256;

/// A GPT partition: its 1-based number, type and unique GUIDs (lower-case text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    pub type_guid: String,
    pub unique_guid: String,
}

/// A GUID in GPT's mixed-endian byte order, as text.
pub fn guid_text(b: &[u8; 16]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15]
    )
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The partitions of a disk with `sector`-byte logical blocks. None if there is no GPT.
pub fn partitions<D: Read + Seek>(disk: &mut D, sector: u64) -> Option<Vec<Partition>> {
    let mut header = vec![0u8; usize::try_from(sector).ok()?.max(92)];
    disk.seek(SeekFrom::Start(sector)).ok()?;
    disk.read_exact(&mut header).ok()?;
    if header.get(..8)? != b"EFI PART" {
        return None;
    }
    let entries_lba = le64(&header, 72)?;
    let count = le32(&header, 80)?.min(MAX_ENTRIES);
    let size = le32(&header, 84)?;
    if !(128..=4096).contains(&size) {
        return None;
    }
    let mut table = vec![0u8; usize::try_from(u64::from(count) * u64::from(size)).ok()?];
    disk.seek(SeekFrom::Start(entries_lba.checked_mul(sector)?))
        .ok()?;
    disk.read_exact(&mut table).ok()?;
    let mut out = Vec::new();
    for (i, e) in table.chunks_exact(size as usize).enumerate() {
        let t: [u8; 16] = e.get(..16)?.try_into().ok()?;
        let u: [u8; 16] = e.get(16..32)?.try_into().ok()?;
        if t == [0u8; 16] {
            continue;
        }
        out.push(Partition {
            number: u32::try_from(i + 1).ok()?,
            type_guid: guid_text(&t),
            unique_guid: guid_text(&u),
        });
    }
    Some(out)
}

/// Pick the ESP: the partition with `partuuid` if given and present, else the first one of
/// the ESP type.
pub fn pick_esp<'a>(parts: &'a [Partition], partuuid: Option<&str>) -> Option<&'a Partition> {
    if let Some(want) = partuuid {
        if let Some(p) = parts.iter().find(|p| p.unique_guid == want) {
            return Some(p);
        }
        return None;
    }
    parts.iter().find(|p| p.type_guid == ESP_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn disk_with(parts: &[([u8; 16], [u8; 16])]) -> Vec<u8> {
        let mut d = vec![0u8; 512 * 40];
        d[512..520].copy_from_slice(b"EFI PART");
        d[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        d[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        d[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        for (i, (t, u)) in parts.iter().enumerate() {
            let at = 1024 + i * 128;
            d[at..at + 16].copy_from_slice(t);
            d[at + 16..at + 32].copy_from_slice(u);
        }
        d
    }

    const ESP_BYTES: [u8; 16] = [
        0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9,
        0x3b,
    ];

    #[test]
    fn finds_the_esp_by_uuid_or_type() {
        let other = [9u8; 16];
        let d = disk_with(&[(other, [1u8; 16]), (ESP_BYTES, [2u8; 16])]);
        let parts = partitions(&mut Cursor::new(d), 512).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].type_guid, ESP_TYPE);
        assert_eq!(pick_esp(&parts, None).unwrap().number, 2);
        let u1 = guid_text(&[1u8; 16]);
        assert_eq!(pick_esp(&parts, Some(&u1)).unwrap().number, 1);
        assert_eq!(pick_esp(&parts, Some("nope")), None);
    }

    #[test]
    fn garbage_is_not_a_gpt() {
        assert_eq!(partitions(&mut Cursor::new(vec![0u8; 4096]), 512), None);
        assert_eq!(partitions(&mut Cursor::new(vec![]), 512), None);
        let mut d = disk_with(&[]);
        d[512 + 84..512 + 88].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(partitions(&mut Cursor::new(d), 512), None);
        let mut d = disk_with(&[]);
        d[512 + 72..512 + 80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(partitions(&mut Cursor::new(d), 512), None);
    }
}
