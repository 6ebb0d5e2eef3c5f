// SPDX-License-Identifier: GPL-3.0-or-later
//! Guest memory: anonymous MAP_NORESERVE mappings (vm-memory), never touched
//! by the VMM except where boot structures are written.

use std::fmt;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::arch::current::layout;

/// Memory errors.
#[derive(Debug)]
pub enum MemoryError {
    /// The requested size is outside the supported range.
    Size(u64),
    /// Mapping the guest memory failed.
    Map(vm_memory::mmap::FromRangesError),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Size(m) => write!(
                f,
                "guest memory of {m} MiB is outside {}..={} MiB",
                layout::MIN_MEM_MIB,
                layout::MAX_MEM_MIB
            ),
            Self::Map(e) => write!(f, "cannot map guest memory: {e}"),
        }
    }
}

impl std::error::Error for MemoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Map(e) => Some(e),
            Self::Size(_) => None,
        }
    }
}

/// Maps `mem_mib` MiB of guest RAM. Returns the memory and its ranges.
pub fn create(mem_mib: u64) -> Result<(GuestMemoryMmap<()>, Vec<layout::RamRange>), MemoryError> {
    if !(layout::MIN_MEM_MIB..=layout::MAX_MEM_MIB).contains(&mem_mib) {
        return Err(MemoryError::Size(mem_mib));
    }
    let bytes = mem_mib << 20;
    let ranges = layout::ram_ranges(bytes);
    let mut v = Vec::with_capacity(ranges.len());
    for &(start, len) in &ranges {
        let len = usize::try_from(len).map_err(|_| MemoryError::Size(mem_mib))?;
        v.push((GuestAddress(start), len));
    }
    let mem = GuestMemoryMmap::from_ranges(&v).map_err(MemoryError::Map)?;
    Ok((mem, ranges))
}
