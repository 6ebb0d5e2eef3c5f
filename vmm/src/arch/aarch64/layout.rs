// SPDX-License-Identifier: GPL-3.0-or-later
//! Guest-physical memory layout (aarch64). Follows the usual arm64 microVM
//! map (Firecracker, Cloud Hypervisor): devices in the 1-2 GiB window, RAM
//! from 2 GiB up. Interrupt numbers are GSIs as KVM_IRQFD takes them (SPI
//! offsets: GSI n is GIC interrupt 32 + n).

/// Start of the MMIO device window (1 GiB).
pub const MMIO_START: u64 = 0x4000_0000;
/// End of the MMIO device window: guest RAM starts here.
pub const MMIO_END: u64 = DRAM_START;
/// Start of guest RAM (2 GiB).
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
/// First virtio-mmio window.
pub const VIRTIO_MMIO_BASE: u64 = MMIO_START + 0x10_0000;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// GSI of the first virtio device.
pub const VIRTIO_FIRST_GSI: u32 = 1;
/// Maximum number of virtio devices (same limit as on x86_64).
pub const MAX_VIRTIO_DEVICES: u64 = 19;
/// Maximum command line size including the NUL (arm64 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Smallest guest RAM we accept.
pub const MIN_MEM_MIB: u64 = 16;
/// Largest guest RAM we accept (rooms are small; 16 GiB is generous).
pub const MAX_MEM_MIB: u64 = 16 * 1024;

// The devices fit in the MMIO window and never overlap each other.
const _: () = assert!(BOOT_TIMER_ADDR + BOOT_TIMER_SIZE <= SERIAL_MMIO_ADDR);
const _: () = assert!(SERIAL_MMIO_ADDR + SERIAL_MMIO_SIZE <= VIRTIO_MMIO_BASE);
const _: () = assert!(VIRTIO_MMIO_BASE + MAX_VIRTIO_DEVICES * VIRTIO_MMIO_SIZE <= MMIO_END);

/// One guest RAM range `(start, len)`.
pub type RamRange = (u64, u64);

/// The RAM ranges for `mem_bytes` of guest memory: one contiguous range from
/// `DRAM_START` (there is no hole to skip on aarch64).
pub fn ram_ranges(mem_bytes: u64) -> Vec<RamRange> {
    vec![(DRAM_START, mem_bytes)]
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
}
