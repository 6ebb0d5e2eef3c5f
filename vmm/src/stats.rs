// SPDX-License-Identifier: GPL-3.0-or-later
//! `--exit-stats`: VM exit counts from KVM's binary statistics (KVM_GET_STATS_FD, one fd
//! per vcpu, opened at setup), summed over the vcpus and printed as one stderr line when
//! the VM stops, plus the queue notifications and the virtio register reads that reached
//! the VMM as MMIO exits (the slow paths; with ioeventfds and read-only register pages
//! there are none). Used by the benchmarks (exits per MiB read).

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Queue notifications handled by a virtio-mmio transport on a vcpu thread (an MMIO exit
/// that KVM did not turn into an ioeventfd signal).
pub static NOTIFY_EXITS: AtomicU64 = AtomicU64::new(0);

/// virtio-mmio register reads handled by a transport on a vcpu thread (an MMIO exit; with
/// the register page mapped into the guest read-only there are none).
pub static REGISTER_READ_EXITS: AtomicU64 = AtomicU64::new(0);

/// The per-vcpu statistics reported, in this order, when KVM has them.
pub const REPORTED: &[&str] = &[
    "exits",
    "io_exits",
    "mmio_exits",
    "halt_exits",
    "irq_exits",
    "irq_window_exits",
    "irq_injections",
];

/// One KVM statistics fd and where the reported values live in its data block.
#[derive(Debug)]
pub struct StatsFd {
    file: File,
    /// (index into REPORTED, byte offset of the u64 value).
    fields: Vec<(usize, u64)>,
}

const HEADER_LEN: usize = 24;
const DESC_LEN: usize = 16;
/// Upper bounds on what we read from the kernel's description (no unbounded buffers).
const MAX_NAME: u32 = 256;
const MAX_DESCS: u32 = 4096;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let raw = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(raw.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let raw = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(raw.try_into().ok()?))
}

impl StatsFd {
    /// Parses the statistics description of `file` (a KVM stats fd).
    pub fn new(file: File) -> std::io::Result<Self> {
        let bad = || std::io::Error::from(std::io::ErrorKind::InvalidData);
        let mut header = [0u8; HEADER_LEN];
        file.read_exact_at(&mut header, 0)?;
        let name_size = u32_at(&header, 4).ok_or_else(bad)?;
        let num_desc = u32_at(&header, 8).ok_or_else(bad)?;
        let desc_offset = u32_at(&header, 16).ok_or_else(bad)?;
        let data_offset = u32_at(&header, 20).ok_or_else(bad)?;
        if name_size > MAX_NAME || num_desc > MAX_DESCS {
            return Err(bad());
        }
        let stride = DESC_LEN + name_size as usize;
        let mut descs = vec![0u8; stride * num_desc as usize];
        file.read_exact_at(&mut descs, u64::from(desc_offset))?;
        let mut fields = Vec::new();
        for d in descs.chunks_exact(stride) {
            let size = u16_at(d, 6).ok_or_else(bad)?;
            let offset = u32_at(d, 8).ok_or_else(bad)?;
            let name = d.get(DESC_LEN..).unwrap_or(&[]);
            let name = name.split(|&c| c == 0).next().unwrap_or(&[]);
            if size < 1 {
                continue;
            }
            if let Some(i) = REPORTED.iter().position(|r| r.as_bytes() == name) {
                fields.push((i, u64::from(data_offset).saturating_add(u64::from(offset))));
            }
        }
        Ok(Self { file, fields })
    }

    /// Adds this fd's current values to `sums` (indexed like [`REPORTED`]).
    pub fn add_to(&self, sums: &mut [Option<u64>]) {
        for &(i, at) in &self.fields {
            let mut v = [0u8; 8];
            if self.file.read_exact_at(&mut v, at).is_ok() {
                if let Some(s) = sums.get_mut(i) {
                    *s = Some(s.unwrap_or(0).saturating_add(u64::from_le_bytes(v)));
                }
            }
        }
    }
}

/// The `--exit-stats` line (without the `anchor-vmm: ` prefix) for the vcpus' stats fds.
pub fn line(fds: &[StatsFd]) -> String {
    let mut sums = vec![None; REPORTED.len()];
    for f in fds {
        f.add_to(&mut sums);
    }
    let mut out = String::from("exit-stats:");
    for (name, v) in REPORTED.iter().zip(&sums) {
        if let Some(v) = v {
            let _ = write!(out, " {name}={v}");
        }
    }
    let _ = write!(
        out,
        " notify_exits={} register_read_exits={}",
        NOTIFY_EXITS.load(Ordering::Relaxed),
        REGISTER_READ_EXITS.load(Ordering::Relaxed)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake stats file in KVM's layout: header, two descriptors, data.
    fn fake() -> File {
        let mut f = tempfile::tempfile().unwrap();
        let name_size = 32u32;
        let mut b = Vec::new();
        for v in [0u32, name_size, 2, 24, 24, 24 + 2 * (16 + name_size)] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for (name, off) in [("exits", 8u32), ("unrelated", 0)] {
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&0i16.to_le_bytes());
            b.extend_from_slice(&1u16.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            let mut n = name.as_bytes().to_vec();
            n.resize(name_size as usize, 0);
            b.extend_from_slice(&n);
        }
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&42u64.to_le_bytes());
        std::io::Write::write_all(&mut f, &b).unwrap();
        f
    }

    #[test]
    fn parses_kvm_layout_and_sums() {
        let a = StatsFd::new(fake()).unwrap();
        let b = StatsFd::new(fake()).unwrap();
        let l = line(&[a, b]);
        assert!(l.starts_with("exit-stats: exits=84 "), "{l}");
        assert!(!l.contains("unrelated"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &[0xff; 40]).unwrap();
        assert!(StatsFd::new(f).is_err());
        assert!(StatsFd::new(tempfile::tempfile().unwrap()).is_err());
    }
}
