// SPDX-License-Identifier: GPL-3.0-or-later
//! What anchor-update's hostile-image tests share: systemd's UKI stub, and that stub with
//! a section header that claims more than the file holds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

/// systemd-boot's stub (systemd-boot-efi), the base of every UKI the tests make.
pub const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// The stub with its .text section's VirtualSize set to `vsize`.
pub fn stub_with_vsize(vsize: u32) -> Vec<u8> {
    let mut b = std::fs::read(STUB).unwrap();
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let pe = u32::from_le_bytes(b[0x3c..0x40].try_into().unwrap()) as usize;
    let (nsec, opt) = (u16_at(&b, pe + 6), u16_at(&b, pe + 20));
    let table = pe + 24 + opt;
    let text = (0..nsec)
        .map(|i| table + 40 * i)
        .find(|&o| &b[o..o + 8] == b".text\0\0\0")
        .unwrap();
    b[text + 8..text + 12].copy_from_slice(&vsize.to_le_bytes());
    b
}
