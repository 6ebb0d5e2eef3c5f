// SPDX-License-Identifier: GPL-3.0-or-later
//! Which `.osrel` a UKI's version comes from: the one systemd-boot reads for its menu
//! (Debian 12's systemd-boot 252, src/boot/efi/pe.c `locate_sections`: every section
//! whose name *starts with* `.osrel`, the last one winning, VirtualSize bytes read from
//! the file at PointerToRawData). An image where that choice and ours could differ has
//! no version (the floor must never compare another version than the menu sorts by).
//! Needs objcopy and Debian's stub (scripts/setup.sh).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use anchor_update::esp::image_version;
use std::path::Path;
use std::process::Command;

/// The stub with `sections` (name, bytes) added in order, each at its own 4 KiB page.
fn uki(dir: &Path, sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut cmd = Command::new("objcopy");
    for (i, (name, data)) in sections.iter().enumerate() {
        let f = dir.join(format!("s{i}"));
        std::fs::write(&f, data).unwrap();
        cmd.arg("--add-section")
            .arg(format!("{name}={}", f.display()))
            .arg("--change-section-vma")
            .arg(format!("{name}={:#x}", 0x20000 + 0x10000 * i));
    }
    let out = dir.join("uki.efi");
    let st = cmd.arg(common::STUB).arg(&out).status().unwrap();
    assert!(st.success());
    std::fs::read(out).unwrap()
}

/// Offset of the header of the section called `name` (exactly) in `image`.
fn header(image: &[u8], name: &[u8]) -> usize {
    let u16_at = |o: usize| u16::from_le_bytes([image[o], image[o + 1]]) as usize;
    let pe = u32::from_le_bytes(image[0x3c..0x40].try_into().unwrap()) as usize;
    let table = pe + 24 + u16_at(pe + 20);
    (0..u16_at(pe + 6))
        .map(|i| table + 40 * i)
        .find(|&o| image[o..o + 8].split(|&b| b == 0).next() == Some(name))
        .unwrap()
}

fn u32_at(image: &[u8], o: usize) -> usize {
    u32::from_le_bytes(image[o..o + 4].try_into().unwrap()) as usize
}

/// The .osrel bytes systemd-boot 252 reads: the last section whose name starts with
/// `.osrel`, VirtualSize bytes from the file at PointerToRawData.
fn what_systemd_boot_reads(image: &[u8], last: &[u8]) -> Vec<u8> {
    let h = header(image, last);
    let (vsize, at) = (u32_at(image, h + 8), u32_at(image, h + 20));
    image[at..(at + vsize).min(image.len())].to_vec()
}

/// A second section whose name starts with `.osrel` is the one systemd-boot 252 reads
/// (prefix match, last wins): anchor-update read the first, exact-named one, so an
/// image could boot as version 9 while the floor compared 1.
#[test]
fn two_sections_named_like_osrel_give_no_version() {
    let d = tempfile::tempdir().unwrap();
    let image = uki(
        d.path(),
        &[
            (".osrel", b"ID=anchor\nIMAGE_VERSION=1\n"),
            (".osrelx", b"ID=anchor\nIMAGE_VERSION=9\n"),
        ],
    );
    let menu = anchor_update::osrel::anchor_version(&what_systemd_boot_reads(&image, b".osrelx"));
    assert_eq!(menu.unwrap().as_str(), "9");
    let ours = image_version(&image);
    let err = ours.expect_err("a version from one of two .osrel sections");
    assert!(
        err.contains("2 sections") && err.contains(".osrel"),
        "{err}"
    );
}

/// An `.osrel` whose VirtualSize exceeds its raw data: systemd-boot reads the file bytes
/// past it (here the next section's: `IMAGE_VERSION=9`), anchor-update zero-filled them
/// and read version 1.
#[test]
fn an_osrel_claiming_more_than_its_raw_data_gives_no_version() {
    let d = tempfile::tempdir().unwrap();
    // Exactly one 512-byte file block, so no zero padding ends the text early.
    let mut osrel = b"ID=anchor\nIMAGE_VERSION=1\n#".to_vec();
    osrel.resize(511, b'x');
    osrel.push(b'\n');
    let mut image = uki(
        d.path(),
        &[(".osrel", &osrel), (".linux", b"IMAGE_VERSION=9\n")],
    );
    let h = header(&image, b".osrel");
    assert_eq!(u32_at(&image, h + 16), 512, "raw size of .osrel");
    let next = header(&image, b".linux");
    assert_eq!(
        u32_at(&image, next + 20),
        u32_at(&image, h + 20) + 512,
        "layout"
    );
    image[h + 8..h + 12].copy_from_slice(&(512u32 + 16).to_le_bytes());
    let menu = anchor_update::osrel::anchor_version(&what_systemd_boot_reads(&image, b".osrel"));
    assert_eq!(menu.unwrap().as_str(), "9");
    let err = image_version(&image).expect_err("a version from zero-filled bytes");
    assert!(err.contains(".osrel") && err.contains("512"), "{err}");
}
