// SPDX-License-Identifier: GPL-3.0-or-later
//! Just enough PE/COFF for UKIs: the sections as the firmware loads them (what systemd-stub
//! measures), and the build-time finishing touch (a zero timestamp and a correct checksum,
//! so that two builds give the same bytes). Parsing is done by the `object` crate; every
//! offset we compute ourselves is checked.

use object::read::pe::PeFile64;
use object::LittleEndian as LE;
use std::borrow::Cow;
use std::fmt;

/// Why a file is not a usable PE image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeError {
    /// The PE parser refused it.
    Parse(String),
    /// A header field lies outside the file.
    Truncated(&'static str),
}

impl fmt::Display for PeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeError::Parse(e) => write!(f, "not a PE32+ image: {e}"),
            PeError::Truncated(what) => write!(f, "PE image truncated at its {what}"),
        }
    }
}

impl std::error::Error for PeError {}

/// One section, named, with its bytes as loaded in memory (VirtualSize long).
#[derive(Debug, Clone)]
pub struct Section<'a> {
    pub name: String,
    pub data: Cow<'a, [u8]>,
}

/// Most bytes all sections of an image may load to together (what a header claims is
/// not allocated: 96 sections of 4 GiB each are no UKI).
pub const MAX_LOADED: u64 = crate::apply::MAX_IMAGE;

/// All sections of `image`, in file order.
pub fn sections(image: &[u8]) -> Result<Vec<Section<'_>>, PeError> {
    let pe = PeFile64::parse(image).map_err(|e| PeError::Parse(e.to_string()))?;
    let total: u64 = pe
        .section_table()
        .iter()
        .map(|s| u64::from(s.virtual_size.get(LE)))
        .sum();
    if total > MAX_LOADED {
        return Err(PeError::Parse(format!(
            "its sections load to {total} bytes, more than {MAX_LOADED}"
        )));
    }
    let mut out = Vec::new();
    for s in pe.section_table().iter() {
        let name = String::from_utf8_lossy(name_of(s.raw_name())).into_owned();
        let vsize = usize::try_from(s.virtual_size.get(LE)).unwrap_or(usize::MAX);
        let raw = s
            .pe_data(image)
            .map_err(|e| PeError::Parse(e.to_string()))?;
        let data = if raw.len() >= vsize {
            Cow::Borrowed(raw.get(..vsize).unwrap_or(raw))
        } else {
            // Loaded memory past the raw data is zero-filled.
            let mut v = raw.to_vec();
            v.resize(vsize, 0);
            Cow::Owned(v)
        };
        out.push(Section { name, data });
    }
    Ok(out)
}

/// A section's name: its 8-byte field up to the first NUL.
fn name_of(raw: &[u8]) -> &[u8] {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    raw.get(..end).unwrap_or_default()
}

/// Largest loaded size [`section`] gives (it reads files not yet verified: what a
/// header claims is not allocated).
pub const MAX_SECTION: usize = 1 << 20;

/// The bytes of the section `name` as systemd-boot reads them for its menu (Debian 12's
/// systemd-boot 252, src/boot/efi/pe.c `locate_sections`: every section whose 8-byte name
/// *starts with* `name` matches and the last one wins; VirtualSize bytes are read from the
/// file at PointerToRawData). Refused where a reader could take other bytes: more than one
/// section matching (later systemd-boots take the first exact name), or a VirtualSize past
/// the section's raw data (systemd-boot reads on into the file, the firmware loads zeros).
/// One loaded larger than [`MAX_SECTION`] is refused too (this reads files not verified).
pub fn section<'a>(image: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, PeError> {
    let pe = PeFile64::parse(image).map_err(|e| PeError::Parse(e.to_string()))?;
    let mut found = pe
        .section_table()
        .iter()
        .filter(|s| s.raw_name().starts_with(name.as_bytes()));
    let Some(s) = found.next() else {
        return Ok(None);
    };
    let more = found.count();
    if more > 0 {
        return Err(PeError::Parse(format!(
            "{} sections named {name}...: systemd-boot and anchor-update could read \
             different ones",
            more + 1
        )));
    }
    let vsize = usize::try_from(s.virtual_size.get(LE)).unwrap_or(usize::MAX);
    if vsize > MAX_SECTION {
        return Err(PeError::Parse(format!(
            "section {name} is {vsize} bytes loaded, more than {MAX_SECTION}"
        )));
    }
    // `pe_data` is the raw data, cut to VirtualSize, and refused past the file's end.
    let raw = s
        .pe_data(image)
        .map_err(|e| PeError::Parse(format!("section {name}: {e}")))?;
    if raw.len() < vsize {
        return Err(PeError::Parse(format!(
            "section {name} is {vsize} bytes loaded but holds only {} in the file \
             (systemd-boot would read the bytes after it)",
            raw.len()
        )));
    }
    Ok(Some(raw))
}

/// The COFF Machine field of `image`: the only architecture whose firmware (and whose
/// systemd-boot, which lists only images of its own machine type) will run it.
pub fn machine(image: &[u8]) -> Result<u16, PeError> {
    let pe = PeFile64::parse(image).map_err(|e| PeError::Parse(e.to_string()))?;
    Ok(pe.nt_headers().file_header.machine.get(LE))
}

/// A PE machine type in words (`x86-64`, `arm64`, or the number).
pub fn machine_name(machine: u16) -> String {
    match machine {
        object::pe::IMAGE_FILE_MACHINE_AMD64 => "x86-64".to_string(),
        object::pe::IMAGE_FILE_MACHINE_ARM64 => "arm64".to_string(),
        other => format!("machine type {other:#06x}"),
    }
}

fn u32_at(b: &[u8], at: usize, what: &'static str) -> Result<u32, PeError> {
    let bytes: [u8; 4] = b
        .get(at..at.saturating_add(4))
        .and_then(|s| s.try_into().ok())
        .ok_or(PeError::Truncated(what))?;
    Ok(u32::from_le_bytes(bytes))
}

/// Offsets of the COFF TimeDateStamp and the optional header's CheckSum.
fn stamp_and_checksum_offsets(image: &[u8]) -> Result<(usize, usize), PeError> {
    let nt = u32_at(image, 0x3c, "DOS header")? as usize;
    // "PE\0\0" (4) + Machine (2) + NumberOfSections (2) -> TimeDateStamp.
    let stamp = nt.checked_add(8).ok_or(PeError::Truncated("COFF header"))?;
    // Optional header at nt + 4 + 20; CheckSum at +64 in both PE32 and PE32+.
    let checksum = nt
        .checked_add(24 + 64)
        .ok_or(PeError::Truncated("optional header"))?;
    u32_at(image, stamp, "COFF header")?;
    u32_at(image, checksum, "optional header")?;
    Ok((stamp, checksum))
}

/// The PE checksum of `image` (the CheckSum field itself counts as zero).
pub fn checksum(image: &[u8]) -> Result<u32, PeError> {
    let (_, at) = stamp_and_checksum_offsets(image)?;
    let mut sum: u64 = 0;
    for (i, pair) in image.chunks(2).enumerate() {
        let off = i * 2;
        if off == at || off == at + 2 {
            continue;
        }
        let lo = u64::from(pair.first().copied().unwrap_or(0));
        let hi = u64::from(pair.get(1).copied().unwrap_or(0));
        sum += lo | (hi << 8);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    let total = sum + image.len() as u64;
    Ok(u32::try_from(total & 0xffff_ffff).unwrap_or(0))
}

/// Make a freshly assembled image reproducible: TimeDateStamp 0 (objcopy writes the
/// current time) and a checksum that matches the bytes.
pub fn finalize(image: &mut [u8]) -> Result<(), PeError> {
    let (stamp, at) = stamp_and_checksum_offsets(image)?;
    if let Some(s) = image.get_mut(stamp..stamp + 4) {
        s.copy_from_slice(&[0; 4]);
    }
    let sum = checksum(image)?;
    if let Some(s) = image.get_mut(at..at + 4) {
        s.copy_from_slice(&sum.to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_is_not_a_pe() {
        assert!(sections(b"MZ not really").is_err());
        assert!(sections(&[]).is_err());
        assert_eq!(
            finalize(&mut [0u8; 10]),
            Err(PeError::Truncated("DOS header"))
        );
    }

    #[test]
    fn the_stub_parses_and_finalize_is_idempotent() {
        // Debian's systemd-boot-efi stub (scripts/setup.sh installs it).
        let stub = std::fs::read("/usr/lib/systemd/boot/efi/linuxx64.efi.stub").unwrap();
        let names: Vec<String> = sections(&stub)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert!(names.contains(&".text".to_string()) && names.contains(&".sbat".to_string()));
        let mut a = stub.clone();
        finalize(&mut a).unwrap();
        let mut b = a.clone();
        finalize(&mut b).unwrap();
        assert_eq!(a, b);
        // Debian's stub is already stamped 0 with a correct checksum.
        assert_eq!(a, stub);
    }
}
