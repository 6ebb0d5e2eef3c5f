// SPDX-License-Identifier: GPL-3.0-or-later
//! Finding the ESP: the GPT partition whose unique GUID systemd-boot reported
//! (`LoaderDevicePartUUID`), or else the first partition of the EFI System type. Linux does
//! not expose partition UUIDs in sysfs, so the partition table is read here, and read as
//! the kernel reads it (CRC32s checked, the backup when the primary is damaged), so that
//! the partition numbers are the kernel's. Disk contents are untrusted input: every field
//! is bounds-checked and the entry array's size is capped.

use std::io::{Read, Seek, SeekFrom};

/// The EFI System Partition type GUID, as text.
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

/// At most this many partitions are listed (the kernel's DISK_MAX_PARTS).
const MAX_ENTRIES: usize = 256;

/// The entry size the kernel accepts (it refuses a GPT with any other).
const ENTRY_SIZE: u32 = 128;

/// Largest entry array read (the kernel refuses one larger than a kmalloc may be, 4 MiB).
const MAX_TABLE: u64 = 4 << 20;

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

/// CRC-32 (IEEE 802.3, reflected, as the UEFI spec uses for GPT headers and entry arrays).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The partitions of a disk with `sector`-byte logical blocks. None if there is no GPT.
///
/// Read as the kernel reads it (block/partitions/efi.c), so that partition N here is the
/// kernel's partition N: the primary header at LBA 1 if it and its entry array check out
/// (CRC32s, sizes, its own LBA), else the backup at the disk's last LBA, else nothing.
pub fn partitions<D: Read + Seek>(disk: &mut D, sector: u64) -> Option<Vec<Partition>> {
    let last_lba = disk
        .seek(SeekFrom::End(0))
        .ok()?
        .checked_div(sector)?
        .checked_sub(1)?;
    let table = read_gpt(disk, sector, 1, last_lba)
        .or_else(|| read_gpt(disk, sector, last_lba, last_lba))?;
    let mut out = Vec::new();
    for (i, e) in table
        .chunks_exact(ENTRY_SIZE as usize)
        .take(MAX_ENTRIES)
        .enumerate()
    {
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

/// The entry array of the GPT header at `lba`, if the header and the array are valid.
fn read_gpt<D: Read + Seek>(disk: &mut D, sector: u64, lba: u64, last_lba: u64) -> Option<Vec<u8>> {
    let mut header = vec![0u8; usize::try_from(sector).ok()?.max(92)];
    disk.seek(SeekFrom::Start(lba.checked_mul(sector)?)).ok()?;
    disk.read_exact(&mut header).ok()?;
    if header.get(..8)? != b"EFI PART" {
        return None;
    }
    let header_size = le32(&header, 12)?;
    if u64::from(header_size) > sector || header_size < 92 {
        return None;
    }
    let mut hashed = header.get(..usize::try_from(header_size).ok()?)?.to_vec();
    let want_crc = le32(&hashed, 16)?;
    hashed.get_mut(16..20)?.fill(0);
    if crc32(&hashed) != want_crc || le64(&header, 24)? != lba {
        return None;
    }
    let (first_usable, last_usable) = (le64(&header, 40)?, le64(&header, 48)?);
    if first_usable > last_usable || last_usable > last_lba {
        return None;
    }
    let entries_lba = le64(&header, 72)?;
    let count = le32(&header, 80)?;
    if le32(&header, 84)? != ENTRY_SIZE {
        return None;
    }
    let bytes = u64::from(count) * u64::from(ENTRY_SIZE);
    if bytes > MAX_TABLE {
        return None;
    }
    let mut table = vec![0u8; usize::try_from(bytes).ok()?];
    disk.seek(SeekFrom::Start(entries_lba.checked_mul(sector)?))
        .ok()?;
    disk.read_exact(&mut table).ok()?;
    (crc32(&table) == le32(&header, 88)?).then_some(table)
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
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    const SECTORS: usize = 80;

    /// A header at `lba` for a 128-entry table at `entries_lba` holding `parts`; CRCs set.
    fn put_gpt(
        d: &mut [u8],
        lba: usize,
        alt: usize,
        entries_lba: usize,
        parts: &[([u8; 16], [u8; 16])],
    ) {
        let mut table = vec![0u8; 128 * 128];
        for (i, (t, u)) in parts.iter().enumerate() {
            table[i * 128..i * 128 + 16].copy_from_slice(t);
            table[i * 128 + 16..i * 128 + 32].copy_from_slice(u);
        }
        d[entries_lba * 512..entries_lba * 512 + table.len()].copy_from_slice(&table);
        let h = lba * 512;
        d[h..h + 8].copy_from_slice(b"EFI PART");
        d[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        d[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
        d[h + 24..h + 32].copy_from_slice(&(lba as u64).to_le_bytes());
        d[h + 32..h + 40].copy_from_slice(&(alt as u64).to_le_bytes());
        d[h + 40..h + 48].copy_from_slice(&34u64.to_le_bytes());
        d[h + 48..h + 56].copy_from_slice(&((SECTORS - 34) as u64).to_le_bytes());
        d[h + 72..h + 80].copy_from_slice(&(entries_lba as u64).to_le_bytes());
        d[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
        d[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
        d[h + 88..h + 92].copy_from_slice(&crc32(&table).to_le_bytes());
        seal(d, lba);
    }

    /// Recompute the header CRC of the header at `lba` (after a test changed a field).
    fn seal(d: &mut [u8], lba: usize) {
        let h = lba * 512;
        d[h + 16..h + 20].copy_from_slice(&[0; 4]);
        let crc = crc32(&d[h..h + 92]);
        d[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
    }

    /// A disk with a primary GPT (LBA 1, entries at 2) and its backup (last LBA, entries
    /// 32 sectors before it).
    pub(crate) fn disk_with(parts: &[([u8; 16], [u8; 16])]) -> Vec<u8> {
        let mut d = vec![0u8; 512 * SECTORS];
        put_gpt(&mut d, 1, SECTORS - 1, 2, parts);
        put_gpt(&mut d, SECTORS - 1, 1, SECTORS - 33, parts);
        d
    }

    pub(crate) const ESP_BYTES: [u8; 16] = [
        0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9,
        0x3b,
    ];

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

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
        // Each field is refused on its own: the header's CRC is made to match again, and
        // the backup is wiped so that it cannot stand in.
        let bad = |at: usize, bytes: &[u8]| {
            let mut d = disk_with(&[(ESP_BYTES, [2u8; 16])]);
            d[(SECTORS - 1) * 512..].fill(0);
            d[512 + at..512 + at + bytes.len()].copy_from_slice(bytes);
            seal(&mut d, 1);
            partitions(&mut Cursor::new(d), 512)
        };
        assert!(bad(0, &[]).is_some());
        assert_eq!(bad(84, &7u32.to_le_bytes()), None, "entry size 7");
        assert_eq!(bad(84, &256u32.to_le_bytes()), None, "entry size 256");
        assert_eq!(
            bad(72, &u64::MAX.to_le_bytes()),
            None,
            "entries past the end"
        );
        assert_eq!(bad(80, &u32::MAX.to_le_bytes()), None, "2^32 entries");
        assert_eq!(bad(12, &91u32.to_le_bytes()), None, "header size 91");
        assert_eq!(bad(12, &513u32.to_le_bytes()), None, "header size 513");
        assert_eq!(bad(24, &5u64.to_le_bytes()), None, "my LBA 5");
    }

    /// The kernel reads a GPT only when its header's and its entry array's CRC32 match
    /// (block/partitions/efi.c, is_gpt_valid), else it takes the backup at the disk's last
    /// LBA. Read without the CRCs, a damaged primary table named another partition as the
    /// ESP than the one the kernel numbered: the wrong /dev/sdXN was mounted.
    #[test]
    fn a_damaged_primary_gives_way_to_the_backup() {
        let other = [9u8; 16];
        let mut d = disk_with(&[(other, [1u8; 16]), (ESP_BYTES, [2u8; 16])]);
        // Bit rot in the primary entry array: entry 1 now reads as an ESP.
        d[1024..1040].copy_from_slice(&ESP_BYTES);
        let parts = partitions(&mut Cursor::new(d.clone()), 512).unwrap();
        assert_eq!(pick_esp(&parts, None).unwrap().number, 2, "{parts:?}");
        // A damaged primary header: the backup too.
        let mut d = disk_with(&[(other, [1u8; 16]), (ESP_BYTES, [2u8; 16])]);
        d[512 + 80..512 + 84].copy_from_slice(&1u32.to_le_bytes());
        let parts = partitions(&mut Cursor::new(d.clone()), 512).unwrap();
        assert_eq!(parts.len(), 2, "{parts:?}");
        // Neither valid: no GPT (the kernel made no partitions either).
        d[(SECTORS - 1) * 512 + 16] ^= 1;
        assert_eq!(partitions(&mut Cursor::new(d), 512), None);
    }
}
