// SPDX-License-Identifier: GPL-3.0-or-later
//! The Linux arm64 `Image` header (Documentation/arch/arm64/booting.rst) and
//! where such a kernel goes in guest RAM. Pure logic: the file is untrusted
//! input, so every field is checked and nothing here can panic or overflow.
//!
//! Written here rather than taken from linux-loader's PE loader because that
//! loader reports the end of the *file* as the kernel's end, while the kernel
//! needs `image_size` bytes (its BSS and early page tables follow the file):
//! the initrd and the device tree must be placed after that.

use std::fmt;

/// Size of the header at the start of the file.
pub const HEADER_SIZE: usize = 64;
/// "ARM\x64", little-endian, at offset 56.
pub const MAGIC: u32 = 0x644d_5241;
/// Offset a kernel with `image_size == 0` (older than 3.17) expects.
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
/// The kernel is placed `text_offset` bytes above a 2 MiB aligned base.
pub const BASE_ALIGN: u64 = 0x20_0000;

/// Why an Image is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than its header.
    TooShort(u64),
    /// No "ARM\x64" magic at offset 56.
    BadMagic(u32),
    /// Flags bit 0: a big-endian kernel.
    BigEndian,
    /// `text_offset` is not below 2 MiB (the base alignment) or not 4 KiB aligned.
    BadTextOffset(u64),
    /// The kernel does not fit in guest RAM below `limit`.
    DoesNotFit {
        /// Bytes the kernel needs from its load address.
        size: u64,
        /// First address it may not reach.
        limit: u64,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => write!(
                f,
                "not an arm64 Image: {n} bytes, shorter than the {HEADER_SIZE}-byte header"
            ),
            Self::BadMagic(m) => write!(
                f,
                "not an arm64 Image: magic {m:#010x} at offset 56 (want {MAGIC:#010x}, \"ARM\\x64\")"
            ),
            Self::BigEndian => f.write_str("arm64 Image is big-endian (flags bit 0): unsupported"),
            Self::BadTextOffset(o) => write!(
                f,
                "arm64 Image text_offset {o:#x} is not a 4 KiB aligned offset below 2 MiB"
            ),
            Self::DoesNotFit { size, limit } => write!(
                f,
                "arm64 Image needs {size:#x} bytes of RAM from its load address, more than fits below {limit:#x}"
            ),
        }
    }
}

impl std::error::Error for ImageError {}

/// The fields of the header we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Offset of the load address from a 2 MiB aligned base.
    pub text_offset: u64,
    /// Bytes the kernel occupies from its load address (0: unknown, pre-3.17).
    pub image_size: u64,
    /// Flags (bit 0 endianness, bits 1-2 page size, bit 3 placement).
    pub flags: u64,
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        v.copy_from_slice(s);
    }
    u32::from_le_bytes(v)
}

/// Parses and checks the header (`bytes` is the start of the file).
pub fn parse_header(bytes: &[u8]) -> Result<Header, ImageError> {
    if bytes.len() < HEADER_SIZE {
        return Err(ImageError::TooShort(bytes.len() as u64));
    }
    let magic = le_u32(bytes, 56);
    if magic != MAGIC {
        return Err(ImageError::BadMagic(magic));
    }
    let image_size = le_u64(bytes, 16);
    let flags = le_u64(bytes, 24);
    if flags & 1 != 0 {
        return Err(ImageError::BigEndian);
    }
    let text_offset = if image_size == 0 {
        LEGACY_TEXT_OFFSET
    } else {
        le_u64(bytes, 8)
    };
    if text_offset >= BASE_ALIGN || text_offset % 0x1000 != 0 {
        return Err(ImageError::BadTextOffset(text_offset));
    }
    Ok(Header {
        text_offset,
        image_size,
        flags,
    })
}

/// Where the kernel goes: `[load, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Load address = entry point (MMU off, x0 = device tree).
    pub load: u64,
    /// First byte after what the kernel may use (file or `image_size`, the larger).
    pub end: u64,
}

/// Places a kernel whose file is `file_len` bytes at `base + text_offset`
/// (`base` 2 MiB aligned: the start of RAM), so that it ends at or below `limit`.
pub fn place(h: &Header, file_len: u64, base: u64, limit: u64) -> Result<Placement, ImageError> {
    let size = h.image_size.max(file_len);
    let load = base
        .checked_add(h.text_offset)
        .ok_or(ImageError::DoesNotFit { size, limit })?;
    let end = load
        .checked_add(size)
        .filter(|&e| e <= limit && base % BASE_ALIGN == 0)
        .ok_or(ImageError::DoesNotFit { size, limit })?;
    Ok(Placement { load, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as `make Image` writes it.
    pub(crate) fn header(text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_SIZE];
        h[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b +64 (code0)
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(&MAGIC.to_le_bytes());
        h
    }

    #[test]
    fn a_real_header_parses() {
        let h = parse_header(&header(0, 0x60_0000, 0xa)).unwrap();
        assert_eq!(
            h,
            Header {
                text_offset: 0,
                image_size: 0x60_0000,
                flags: 0xa
            }
        );
        // Pre-3.17: image_size 0 means text_offset 0x80000 whatever the field says.
        assert_eq!(
            parse_header(&header(0x1234, 0, 0)).unwrap().text_offset,
            LEGACY_TEXT_OFFSET
        );
    }

    #[test]
    fn hostile_headers_are_refused() {
        assert_eq!(parse_header(&[0; 10]), Err(ImageError::TooShort(10)));
        let mut bad = header(0, 0x1000, 0);
        bad[56] = b'X';
        assert!(matches!(parse_header(&bad), Err(ImageError::BadMagic(_))));
        assert_eq!(
            parse_header(&header(0, 0x1000, 1)),
            Err(ImageError::BigEndian)
        );
        for off in [BASE_ALIGN, u64::MAX, 0x123] {
            assert_eq!(
                parse_header(&header(off, 0x1000, 0)),
                Err(ImageError::BadTextOffset(off))
            );
        }
        // An ELF vmlinux (the x86_64 room kernel) is not an Image.
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        assert!(matches!(parse_header(&elf), Err(ImageError::BadMagic(_))));
    }

    #[test]
    fn placement_uses_image_size_and_checks_the_limit() {
        let h = parse_header(&header(0x8_0000, 0x40_0000, 0)).unwrap();
        let base = 0x8000_0000;
        let p = place(&h, 0x10_0000, base, base + 0x100_0000).unwrap();
        assert_eq!(p.load, base + 0x8_0000);
        assert_eq!(p.end, base + 0x8_0000 + 0x40_0000);
        // A file longer than image_size claims: the file length wins.
        let p = place(&h, 0x50_0000, base, base + 0x100_0000).unwrap();
        assert_eq!(p.end, base + 0x8_0000 + 0x50_0000);
        // Too big for RAM, and sizes that would overflow.
        assert!(place(&h, 0x10_0000, base, base + 0x20_0000).is_err());
        let huge = parse_header(&header(0, u64::MAX, 0)).unwrap();
        assert!(place(&huge, 0, base, u64::MAX).is_err());
        // A base that is not 2 MiB aligned is refused.
        assert!(place(&h, 0x1000, base + 0x1000, base + 0x100_0000).is_err());
    }
}
