// SPDX-License-Identifier: GPL-3.0-or-later
//! Guest memory: anonymous MAP_NORESERVE mappings, 2 MiB aligned and advised for
//! transparent huge pages (`sys::map_guest_ram`), wrapped as vm-memory regions; never
//! touched by the VMM except where boot structures are written.

use std::fmt;

use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap};

use crate::arch::current::layout;

/// Memory errors.
#[derive(Debug)]
pub enum MemoryError {
    /// The requested size is outside the supported range.
    Size(u64),
    /// Mapping the guest memory failed.
    Map(std::io::Error),
    /// The regions do not form a valid guest memory (overlap or order).
    Regions(vm_memory::GuestRegionCollectionError),
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
            Self::Regions(e) => write!(f, "cannot lay out guest memory: {e}"),
        }
    }
}

impl std::error::Error for MemoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Map(e) => Some(e),
            Self::Regions(e) => Some(e),
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
    let mut huge = true;
    for &(start, len) in &ranges {
        let len = usize::try_from(len).map_err(|_| MemoryError::Size(mem_mib))?;
        let (region, advised) = crate::sys::map_guest_ram(len).map_err(MemoryError::Map)?;
        huge &= advised;
        let region =
            GuestRegionMmap::new(region, GuestAddress(start)).ok_or(MemoryError::Size(mem_mib))?;
        v.push(region);
    }
    let mem = GuestMemoryMmap::from_regions(v).map_err(MemoryError::Regions)?;
    if !huge {
        // Said at start, once: the room works, each first touch of a 4 KiB page costs an exit.
        crate::log::say(format_args!(
            "guest RAM in 4 KiB pages: the host kernel has no transparent huge pages"
        ));
    }
    Ok((mem, ranges))
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};

    use super::*;
    use crate::sys::{map_guest_ram, GUEST_RAM_ALIGN};

    #[test]
    fn every_region_starts_on_a_huge_page_boundary_and_holds_data() {
        let (mem, ranges) = create(64).expect("64 MiB of guest memory");
        assert_eq!(mem.num_regions(), ranges.len());
        for (r, &(start, len)) in mem.iter().zip(&ranges) {
            assert_eq!(r.start_addr().0, start);
            assert_eq!(r.len(), len);
            assert_eq!(
                r.as_ptr() as usize % GUEST_RAM_ALIGN,
                0,
                "region at {start:#x}"
            );
        }
        let last = GuestAddress((64 << 20) - 8);
        mem.write_obj(0x1234_5678_u64, last)
            .expect("write at the end");
        assert_eq!(mem.read_obj::<u64>(last).expect("read back"), 0x1234_5678);
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(0)).expect("fresh memory"),
            0
        );
        assert!(mem.write_obj(0_u64, GuestAddress(64 << 20)).is_err());
    }

    #[test]
    fn the_huge_page_advice_is_taken_where_the_kernel_has_thp() {
        let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists();
        let (region, huge) = map_guest_ram(4 << 20).expect("4 MiB");
        assert_eq!(region.as_ptr() as usize % GUEST_RAM_ALIGN, 0);
        assert_eq!(region.size(), 4 << 20);
        assert_eq!(huge, thp, "MADV_HUGEPAGE accepted iff the kernel has THP");
    }

    #[test]
    fn sizes_outside_the_range_are_refused_by_name() {
        let e = create(layout::MAX_MEM_MIB + 1).expect_err("too big");
        let want = format!("guest memory of {} MiB is outside", layout::MAX_MEM_MIB + 1);
        assert!(e.to_string().contains(&want), "{e}");
    }
}
