// SPDX-License-Identifier: GPL-3.0-or-later
//! Intel MultiProcessor Specification 1.4 table: tells a guest without ACPI
//! about its vcpus (local APIC ids = vcpu ids), the ISA bus, the IOAPIC and how
//! IRQs 0..pins are wired to it (one entry per IOAPIC pin, IRQ N to pin N). Placed at the start of the EBDA
//! (0x9fc00), which Linux scans ("last KiB of base memory").

use std::fmt;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where the MP floating pointer goes.
pub const MPTABLE_START: u64 = 0x9fc00;
/// Bytes available (up to 640 KiB).
const MPTABLE_MAX: usize = 0x400;
const APIC_DEFAULT_ADDR: u32 = 0xfee0_0000;
const IOAPIC_DEFAULT_ADDR: u32 = 0xfec0_0000;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_STEPPING: u32 = 0x600;
const CPU_FEATURE_APIC: u32 = 0x200;
const CPU_FEATURE_FPU: u32 = 0x001;

/// MP table errors.
#[derive(Debug)]
pub enum MptableError {
    /// Too many vcpus for the EBDA space.
    TooManyCpus(u8),
    /// Writing guest memory failed.
    Memory(vm_memory::GuestMemoryError),
}

impl fmt::Display for MptableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyCpus(n) => write!(f, "MP table: {n} vcpus do not fit"),
            Self::Memory(e) => write!(f, "writing the MP table: {e}"),
        }
    }
}

impl std::error::Error for MptableError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Memory(e) => Some(e),
            Self::TooManyCpus(_) => None,
        }
    }
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Builds the floating pointer + configuration table for `cpus` vcpus and an IOAPIC
/// with `pins` pins (at most 24), as it must appear at `MPTABLE_START`.
pub fn build(cpus: u8, pins: usize) -> Result<Vec<u8>, MptableError> {
    if cpus == 0 || cpus > 32 {
        return Err(MptableError::TooManyCpus(cpus));
    }
    let ioapic_id = cpus.saturating_add(1);
    let table_addr = (MPTABLE_START + 16) as u32;

    // Entries first, so the header can carry their count and length.
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus {
        entries.push(0); // processor
        entries.push(id); // local APIC id
        entries.push(APIC_VERSION);
        entries.push(if id == 0 { 0x3 } else { 0x1 }); // enabled (+ BSP)
        entries.extend_from_slice(&CPU_STEPPING.to_le_bytes());
        entries.extend_from_slice(&(CPU_FEATURE_APIC | CPU_FEATURE_FPU).to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]); // bus 0
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]); // IOAPIC, enabled
    entries.extend_from_slice(&IOAPIC_DEFAULT_ADDR.to_le_bytes());
    count += 1;
    for irq in 0..pins.min(super::ioapic::MAX_PINS) as u8 {
        // I/O interrupt: INT, conforming polarity/trigger, ISA irq -> IOAPIC pin.
        entries.extend_from_slice(&[3, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // Local interrupts: ExtINT -> LINT0, NMI -> LINT1 of every local APIC.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_len = 44 + entries.len();
    let mut table = Vec::with_capacity(table_len);
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.push(4); // spec rev 1.4
    table.push(0); // checksum (below)
    table.extend_from_slice(b"ANCHOROS");
    table.extend_from_slice(b"ANCHOR-VMM  ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&APIC_DEFAULT_ADDR.to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes()); // extended table length
    table.push(0); // extended table checksum
    table.push(0);
    table.extend_from_slice(&entries);
    let c = checksum(&table);
    if let Some(slot) = table.get_mut(7) {
        *slot = c;
    }

    let mut fp = Vec::with_capacity(16 + table.len());
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&table_addr.to_le_bytes());
    fp.push(1); // length in 16-byte units
    fp.push(4); // spec rev
    fp.push(0); // checksum (below)
    fp.extend_from_slice(&[0; 5]); // feature bytes: configuration table present
    let c = checksum(&fp);
    if let Some(slot) = fp.get_mut(10) {
        *slot = c;
    }
    fp.extend_from_slice(&table);
    if fp.len() > MPTABLE_MAX {
        return Err(MptableError::TooManyCpus(cpus));
    }
    Ok(fp)
}

/// Writes the MP table for `cpus` vcpus and a `pins`-pin IOAPIC into guest memory.
pub fn write(mem: &GuestMemoryMmap<()>, cpus: u8, pins: usize) -> Result<(), MptableError> {
    let t = build(cpus, pins)?;
    mem.write_slice(&t, GuestAddress(MPTABLE_START))
        .map_err(MptableError::Memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_layout() {
        for (cpus, pins) in [(1u8, 6), (2, 24), (16, 9), (32, 24)] {
            let t = build(cpus, pins).unwrap();
            assert_eq!(&t[..4], b"_MP_");
            assert_eq!(t[..16].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
            let addr = u32::from_le_bytes(t[4..8].try_into().unwrap());
            assert_eq!(u64::from(addr), MPTABLE_START + 16);
            let table = &t[16..];
            assert_eq!(&table[..4], b"PCMP");
            let len = u16::from_le_bytes([table[4], table[5]]) as usize;
            assert_eq!(len, table.len());
            assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
            let count = u16::from_le_bytes([table[34], table[35]]);
            assert_eq!(count, u16::from(cpus) + 1 + 1 + pins as u16 + 2);
            // First processor entry is the enabled BSP with APIC id 0.
            assert_eq!(&table[44..48], &[0, 0, APIC_VERSION, 3]);
        }
        assert!(build(0, 24).is_err());
        assert!(build(33, 24).is_err());
    }

    #[test]
    fn one_interrupt_entry_per_ioapic_pin() {
        let entries = |pins: usize| {
            let t = build(1, pins).unwrap();
            // After the header (16 + 44), one processor (20), the bus and the IOAPIC (8 each).
            t[16 + 44 + 20 + 16..]
                .chunks(8)
                .filter(|e| e[0] == 3)
                .map(|e| (e[5], e[7]))
                .collect::<Vec<_>>()
        };
        assert_eq!(entries(6), (0u8..6).map(|i| (i, i)).collect::<Vec<_>>());
        assert_eq!(entries(24).len(), 24);
        assert_eq!(
            entries(1000).len(),
            24,
            "never more than the IOAPIC can have"
        );
    }
}
