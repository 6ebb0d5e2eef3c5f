// SPDX-License-Identifier: GPL-3.0-or-later
//! Guest-physical memory layout (aarch64). Follows the usual arm64 microVM
//! map (Firecracker, Cloud Hypervisor): devices in the 1-2 GiB window, RAM
//! from 2 GiB up. Interrupt numbers are GSIs as KVM_IRQFD takes them: with
//! the in-kernel GIC's default routing, GSI n is SPI n (GIC INTID 32 + n),
//! which is also how the device tree names it.
//!
//! ```text
//! 0x4000_0000  boot timer (4 KiB)
//! 0x4000_1000  16550 UART (4 KiB, byte registers 0..8)       SPI 0
//! 0x4010_0000  virtio-mmio windows, 4 KiB each (<= 19)       SPI 1 + i
//! 0x4800_0000  GIC distributor (64 KiB)
//! 0x4801_0000  GICv3 redistributors (128 KiB per vcpu) or GICv2 CPU interface
//! 0x8000_0000  RAM: kernel Image at text_offset, ... initrd, device tree
//! ```

/// Start of the MMIO device window (1 GiB).
pub const MMIO_START: u64 = 0x4000_0000;
/// End of the MMIO device window: guest RAM starts here.
pub const MMIO_END: u64 = DRAM_START;
/// Start of guest RAM (2 GiB; 2 MiB aligned, as the Image protocol needs).
pub const DRAM_START: u64 = 0x8000_0000;
/// Boot timer MMIO device.
pub const BOOT_TIMER_ADDR: u64 = MMIO_START;
/// Size of the boot timer window.
pub const BOOT_TIMER_SIZE: u64 = 0x1000;
/// The 16550 UART (MMIO on aarch64: there is no port I/O).
pub const SERIAL_MMIO_ADDR: u64 = MMIO_START + 0x1000;
/// Size of the UART window.
pub const SERIAL_MMIO_SIZE: u64 = 0x1000;
/// GSI of the serial port.
pub const SERIAL_IRQ: u32 = 0;
/// The UART's input clock as the device tree states it (the 16550 default).
pub const SERIAL_CLOCK_HZ: u32 = 1_843_200;
/// First virtio-mmio window.
pub const VIRTIO_MMIO_BASE: u64 = MMIO_START + 0x10_0000;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// GSI of the first virtio device.
pub const VIRTIO_FIRST_GSI: u32 = 1;
/// Maximum number of virtio devices (same limit as on x86_64).
pub const MAX_VIRTIO_DEVICES: u64 = 19;
/// GIC distributor (GICv3 and GICv2).
pub const GIC_DIST_ADDR: u64 = 0x4800_0000;
/// Size of the GICv3 distributor frame (GICv2's is 4 KiB of it).
pub const GIC_DIST_SIZE: u64 = 0x1_0000;
/// GICv3 redistributors: two 64 KiB frames per vcpu, from here.
pub const GIC_REDIST_ADDR: u64 = GIC_DIST_ADDR + GIC_DIST_SIZE;
/// Size of one vcpu's redistributor.
pub const GIC_REDIST_SIZE_PER_CPU: u64 = 0x2_0000;
/// GICv2 CPU interface (same slot as the redistributors; only one GIC exists).
pub const GIC_CPU_ADDR: u64 = GIC_REDIST_ADDR;
/// Size of the GICv2 CPU interface.
pub const GIC_CPU_SIZE: u64 = 0x2000;
/// GICv2 distributor size.
pub const GIC_V2_DIST_SIZE: u64 = 0x1000;
/// Interrupts the GIC implements: 32 private (SGI + PPI) + 32 SPIs, enough for
/// the UART and every virtio device (a multiple of 32, as KVM requires).
pub const GIC_NR_IRQS: u32 = 64;
/// Most vcpus the layout holds (redistributor space); config::MAX_VCPUS is 16.
pub const MAX_VCPUS: u64 = 16;
/// GICv2 cannot address more than 8 CPUs.
pub const GIC_V2_MAX_VCPUS: usize = 8;
/// Largest device tree we write (ours is ~2 KiB).
pub const FDT_MAX_SIZE: u64 = 0x1_0000;
/// Maximum command line size including the NUL (arm64 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Smallest guest RAM we accept.
pub const MIN_MEM_MIB: u64 = 16;
/// Largest guest RAM we accept (rooms are small; 16 GiB is generous).
pub const MAX_MEM_MIB: u64 = 16 * 1024;

// The devices fit in the MMIO window and never overlap each other.
const _: () = assert!(BOOT_TIMER_ADDR + BOOT_TIMER_SIZE <= SERIAL_MMIO_ADDR);
const _: () = assert!(SERIAL_MMIO_ADDR + SERIAL_MMIO_SIZE <= VIRTIO_MMIO_BASE);
const _: () = assert!(VIRTIO_MMIO_BASE + MAX_VIRTIO_DEVICES * VIRTIO_MMIO_SIZE <= GIC_DIST_ADDR);
const _: () = assert!(GIC_REDIST_ADDR + MAX_VCPUS * GIC_REDIST_SIZE_PER_CPU <= MMIO_END);
// Every device interrupt is an implemented SPI.
const _: () = assert!(32 + VIRTIO_FIRST_GSI as u64 + MAX_VIRTIO_DEVICES <= GIC_NR_IRQS as u64);

/// One guest RAM range `(start, len)`.
pub type RamRange = (u64, u64);

/// The RAM ranges for `mem_bytes` of guest memory: one contiguous range from
/// `DRAM_START` (there is no hole to skip on aarch64).
pub fn ram_ranges(mem_bytes: u64) -> Vec<RamRange> {
    vec![(DRAM_START, mem_bytes)]
}

/// Where the device tree goes for RAM ending at `ram_end`: the start of the
/// last 2 MiB block that holds `FDT_MAX_SIZE` bytes (the kernel maps the tree
/// with blocks of up to 2 MiB; the block holds nothing else). `None` when RAM
/// is too small to hold it above `DRAM_START`.
pub fn fdt_addr(ram_end: u64) -> Option<u64> {
    let a = ram_end.checked_sub(FDT_MAX_SIZE)? & !(0x20_0000 - 1);
    (a >= DRAM_START).then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_is_one_range_above_the_devices() {
        assert_eq!(ram_ranges(32 << 20), vec![(DRAM_START, 32 << 20)]);
        let (start, _) = ram_ranges(MAX_MEM_MIB << 20)[0];
        assert!(start >= MMIO_END);
    }

    #[test]
    fn fdt_sits_in_the_last_2mib_block() {
        let end = DRAM_START + (128 << 20);
        assert_eq!(fdt_addr(end), Some(end - 0x20_0000));
        // An odd number of MiB: the block below the end, still in RAM.
        let end = DRAM_START + (17 << 20);
        let a = fdt_addr(end).unwrap();
        assert_eq!(a % 0x20_0000, 0);
        assert!(a + FDT_MAX_SIZE <= end && a >= DRAM_START);
        assert_eq!(fdt_addr(DRAM_START + 0x8000), None);
    }
}
