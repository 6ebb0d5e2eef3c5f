// SPDX-License-Identifier: GPL-3.0-or-later
//! aarch64 boot entry points, with the same signatures as on x86_64. None is
//! implemented yet: each returns `BootError::Unsupported`.

use std::fmt;
use std::fs::File;

use vm_memory::GuestMemoryMmap;

use super::layout::RamRange;
use super::UNSUPPORTED;

/// Boot errors.
#[derive(Debug)]
pub enum BootError {
    /// Booting guests on this architecture is not implemented yet.
    Unsupported,
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported => f.write_str(UNSUPPORTED),
        }
    }
}

impl std::error::Error for BootError {}

/// How the boot vcpu enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// arm64 Linux `Image` protocol: x0 = FDT address, MMU off.
    Image,
}

/// Where and how to start the boot vcpu.
#[derive(Debug, Clone, Copy)]
pub struct KernelEntry {
    /// Entry point (guest-physical).
    pub entry: u64,
    /// Protocol.
    pub mode: EntryMode,
    /// End of the loaded image.
    pub kernel_end: u64,
}

/// Loads the kernel. Not implemented on aarch64 yet.
pub fn load_kernel(_mem: &GuestMemoryMmap<()>, _file: &mut File) -> Result<KernelEntry, BootError> {
    Err(BootError::Unsupported)
}

/// Loads the initrd. Not implemented on aarch64 yet.
pub fn load_initrd(
    _mem: &GuestMemoryMmap<()>,
    _file: &mut File,
    _ranges: &[RamRange],
    _kernel_end: u64,
) -> Result<(u64, u64), BootError> {
    Err(BootError::Unsupported)
}

/// Writes the boot structures (FDT, command line). Not implemented on
/// aarch64 yet.
pub fn write_boot_structures(
    _mem: &GuestMemoryMmap<()>,
    _mode: EntryMode,
    _cmdline: &str,
    _initrd: Option<(u64, u64)>,
    _ranges: &[RamRange],
) -> Result<(), BootError> {
    Err(BootError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    #[test]
    fn every_entry_point_reports_unsupported() {
        let mem =
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x8000_0000), 1 << 20)]).unwrap();
        let mut f = tempfile::tempfile().unwrap();
        let e = load_kernel(&mem, &mut f).unwrap_err();
        assert_eq!(e.to_string(), UNSUPPORTED);
        assert!(load_initrd(&mem, &mut f, &[], 0).is_err());
        assert!(write_boot_structures(&mem, EntryMode::Image, "", None, &[]).is_err());
    }
}
