// SPDX-License-Identifier: GPL-3.0-or-later
//! Guest-physical memory layout (x86_64). Low memory follows Firecracker's
//! proven placement; MMIO lives in the 3-4 GiB gap.

/// GDT used at boot.
pub const BOOT_GDT_OFFSET: u64 = 0x500;
/// Empty IDT used at boot.
pub const BOOT_IDT_OFFSET: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (one entry: the initrd).
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map.
pub const PVH_MEMMAP_START: u64 = 0x6080;
/// Maximum number of PVH memmap / e820 entries we ever write.
pub const MAX_E820_ENTRIES: usize = 8;
/// Linux zero page (`boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer for the 64-bit Linux entry.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// Four page directories (2 MiB pages) covering 4 GiB.
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Maximum command line size including the NUL.
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// Start of the EBDA: low RAM ends here.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of high memory (kernel load area).
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO gap.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO gap (4 GiB).
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// Boot timer MMIO device.
pub const BOOT_TIMER_ADDR: u64 = 0xc000_0000;
/// Size of the boot timer window.
pub const BOOT_TIMER_SIZE: u64 = 0x1000;
/// First virtio-mmio window.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// GSI of the first virtio device.
pub const VIRTIO_FIRST_GSI: u32 = 5;
/// Maximum number of virtio devices (GSIs 5..=23 on the IOAPIC).
pub const MAX_VIRTIO_DEVICES: u64 = 19;
/// KVM's three-page TSS region (inside the MMIO gap, never RAM).
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// KVM's identity-map page (just below the TSS).
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;
/// Serial port base and IRQ.
pub const SERIAL_PORT: u16 = 0x3f8;
/// IRQ line of the serial port.
pub const SERIAL_IRQ: u32 = 4;
/// Smallest guest RAM we accept.
pub const MIN_MEM_MIB: u64 = 16;
/// Largest guest RAM we accept (rooms are small; 16 GiB is generous).
pub const MAX_MEM_MIB: u64 = 16 * 1024;

// The virtio windows stay below KVM's identity map / TSS pages.
const _: () =
    assert!(VIRTIO_MMIO_BASE + MAX_VIRTIO_DEVICES * VIRTIO_MMIO_SIZE <= KVM_IDENTITY_MAP_ADDRESS);
// Every virtio GSI is a pin of the IOAPIC.
const _: () = assert!(
    VIRTIO_FIRST_GSI as u64 + MAX_VIRTIO_DEVICES <= super::ioapic::MAX_PINS as u64
        && SERIAL_IRQ < VIRTIO_FIRST_GSI
);

/// The IOAPIC pins a room with `virtio_devices` devices uses: the serial line's and one
/// per device, from `VIRTIO_FIRST_GSI` on (the pins below it that no device uses are
/// kept so that GSI = pin; they stay masked).
pub fn ioapic_pins(virtio_devices: u64) -> usize {
    let n = u64::from(VIRTIO_FIRST_GSI).saturating_add(virtio_devices.min(MAX_VIRTIO_DEVICES));
    usize::try_from(n).unwrap_or(super::ioapic::MAX_PINS)
}

/// One guest RAM range `(start, len)`.
pub type RamRange = (u64, u64);

/// The RAM ranges for `mem_bytes` of guest memory: below the MMIO gap and,
/// for large guests, the rest above 4 GiB. At most two ranges.
pub fn ram_ranges(mem_bytes: u64) -> Vec<RamRange> {
    let low = mem_bytes.min(MMIO_GAP_START);
    let mut v = vec![(0, low)];
    let high = mem_bytes.saturating_sub(low);
    if high > 0 {
        v.push((MMIO_GAP_END, high));
    }
    v
}

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// The e820 map `(addr, size, type)` for the given RAM ranges.
pub fn e820_map(ranges: &[RamRange]) -> Vec<(u64, u64, u32)> {
    let mut v = vec![(0, EBDA_START, E820_RAM)];
    for &(start, len) in ranges {
        let end = start.saturating_add(len);
        let s = start.max(HIMEM_START);
        if end > s {
            v.push((s, end - s, E820_RAM));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_around_the_gap() {
        assert_eq!(ram_ranges(32 << 20), vec![(0, 32 << 20)]);
        assert_eq!(
            ram_ranges(4 << 30),
            vec![(0, MMIO_GAP_START), (MMIO_GAP_END, 1 << 30)]
        );
        let e = e820_map(&ram_ranges(32 << 20));
        assert_eq!(
            e,
            vec![
                (0, EBDA_START, 1),
                (HIMEM_START, (32 << 20) - HIMEM_START, 1)
            ]
        );
    }

    #[test]
    fn a_room_gets_the_pins_its_devices_use() {
        // The serial line (4) and the first device (5): the smallest IOAPIC.
        assert_eq!(ioapic_pins(1), 6);
        assert_eq!(ioapic_pins(4), 9);
        assert_eq!(ioapic_pins(MAX_VIRTIO_DEVICES), 24);
        assert_eq!(ioapic_pins(u64::MAX), 24);
    }
}
