// SPDX-License-Identifier: GPL-3.0-or-later
//! Boot structures in guest memory: kernel + initrd placement, command line,
//! GDT/IDT, identity page tables, the Linux zero page and PVH start_info.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek};

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::boot_params;
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, ReadVolatile};

use super::gdt;
use super::layout::{self, RamRange};

/// XEN_HVM_START_MAGIC_VALUE.
const PVH_MAGIC: u32 = 0x336e_c578;

/// Boot errors.
#[derive(Debug)]
pub enum BootError {
    /// The kernel image could not be loaded.
    Kernel(linux_loader::loader::Error),
    /// The initrd could not be read or does not fit.
    Initrd(&'static str, Option<std::io::Error>),
    /// The command line is too long or contains a NUL.
    Cmdline(&'static str),
    /// Writing a boot structure to guest memory failed.
    Memory(&'static str, vm_memory::GuestMemoryError),
    /// linux-loader's boot configurator failed.
    Configurator(linux_loader::configurator::Error),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kernel(e) => write!(f, "cannot load kernel: {e}"),
            Self::Initrd(what, Some(e)) => write!(f, "initrd: {what}: {e}"),
            Self::Initrd(what, None) => write!(f, "initrd: {what}"),
            Self::Cmdline(what) => write!(f, "kernel command line: {what}"),
            Self::Memory(what, e) => write!(f, "writing {what} to guest memory: {e}"),
            Self::Configurator(e) => write!(f, "writing PVH boot parameters: {e}"),
        }
    }
}

impl std::error::Error for BootError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Kernel(e) => Some(e),
            Self::Initrd(_, Some(e)) => Some(e),
            Self::Memory(_, e) => Some(e),
            Self::Configurator(e) => Some(e),
            _ => None,
        }
    }
}

/// How the vcpu enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 64-bit Linux boot protocol: long mode, rsi = zero page.
    Linux64,
    /// PVH: 32-bit protected mode, rbx = start_info.
    Pvh,
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

/// Loads an ELF kernel read from `image` (a file, or a mapped one); a PVH note selects
/// the PVH protocol.
pub fn load_kernel<F>(mem: &GuestMemoryMmap<()>, image: &mut F) -> Result<KernelEntry, BootError>
where
    F: Read + Seek + ReadVolatile,
{
    let r = Elf::load(mem, None, image, Some(GuestAddress(layout::HIMEM_START)))
        .map_err(BootError::Kernel)?;
    let (entry, mode) = match r.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(a) => (a.0, EntryMode::Pvh),
        _ => (r.kernel_load.0, EntryMode::Linux64),
    };
    Ok(KernelEntry {
        entry,
        mode,
        kernel_end: r.kernel_end,
    })
}

/// Loads the initrd page-aligned at the top of low RAM. Returns (addr, size).
pub fn load_initrd(
    mem: &GuestMemoryMmap<()>,
    file: &mut File,
    ranges: &[RamRange],
    kernel_end: u64,
) -> Result<(u64, u64), BootError> {
    let size = file
        .metadata()
        .map_err(|e| BootError::Initrd("cannot stat", Some(e)))?
        .len();
    let low_end = ranges.first().map_or(0, |&(s, l)| s.saturating_add(l));
    let addr = low_end
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|&a| a >= kernel_end.max(layout::HIMEM_START))
        .ok_or(BootError::Initrd("does not fit in guest memory", None))?;
    let len = usize::try_from(size).map_err(|_| BootError::Initrd("too large", None))?;
    mem.read_exact_volatile_from(GuestAddress(addr), file, len)
        .map_err(|e| BootError::Memory("initrd", e))?;
    Ok((addr, size))
}

/// Writes the NUL-terminated command line. Returns its length without NUL.
pub fn write_cmdline(mem: &GuestMemoryMmap<()>, cmdline: &str) -> Result<usize, BootError> {
    if cmdline.len() >= layout::CMDLINE_MAX_SIZE {
        return Err(BootError::Cmdline("too long"));
    }
    if cmdline.bytes().any(|b| b == 0) {
        return Err(BootError::Cmdline("contains a NUL byte"));
    }
    let mut buf = Vec::with_capacity(cmdline.len() + 1);
    buf.extend_from_slice(cmdline.as_bytes());
    buf.push(0);
    mem.write_slice(&buf, GuestAddress(layout::CMDLINE_START))
        .map_err(|e| BootError::Memory("command line", e))?;
    Ok(cmdline.len())
}

/// Writes the boot GDT and an empty IDT.
pub fn write_gdt(mem: &GuestMemoryMmap<()>, table: &[u64]) -> Result<(), BootError> {
    for (i, e) in table.iter().enumerate() {
        let off = layout::BOOT_GDT_OFFSET + (i as u64) * 8;
        mem.write_obj(*e, GuestAddress(off))
            .map_err(|e| BootError::Memory("GDT", e))?;
    }
    mem.write_obj(0u64, GuestAddress(layout::BOOT_IDT_OFFSET))
        .map_err(|e| BootError::Memory("IDT", e))
}

/// Identity-maps the first 4 GiB with 2 MiB pages (PML4 -> 1 PDPT -> 4 PDs).
pub fn write_page_tables(mem: &GuestMemoryMmap<()>) -> Result<(), BootError> {
    let w = |v: u64, a: u64| {
        mem.write_obj(v, GuestAddress(a))
            .map_err(|e| BootError::Memory("page tables", e))
    };
    w(layout::PDPTE_START | 0x3, layout::PML4_START)?;
    for pd in 0..4u64 {
        let pd_addr = layout::PDE_START + pd * 0x1000;
        w(pd_addr | 0x3, layout::PDPTE_START + pd * 8)?;
        let mut table = [0u8; 4096];
        for (i, chunk) in table.chunks_exact_mut(8).enumerate() {
            let phys = ((pd * 512 + i as u64) << 21) | 0x83; // present, rw, 2 MiB
            chunk.copy_from_slice(&phys.to_le_bytes());
        }
        mem.write_slice(&table, GuestAddress(pd_addr))
            .map_err(|e| BootError::Memory("page tables", e))?;
    }
    Ok(())
}

/// Writes the Linux zero page (boot_params) with e820 and initrd fields.
pub fn write_zero_page(
    mem: &GuestMemoryMmap<()>,
    cmdline_len: usize,
    initrd: Option<(u64, u64)>,
    ranges: &[RamRange],
) -> Result<(), BootError> {
    let mut p = boot_params::default();
    p.hdr.type_of_loader = 0xff;
    p.hdr.boot_flag = 0xaa55;
    p.hdr.header = 0x5372_6448; // "HdrS"
    p.hdr.kernel_alignment = 0x0100_0000;
    p.hdr.cmd_line_ptr = layout::CMDLINE_START as u32;
    p.hdr.cmdline_size = cmdline_len as u32;
    if let Some((addr, size)) = initrd {
        p.hdr.ramdisk_image =
            u32::try_from(addr).map_err(|_| BootError::Initrd("above 4 GiB", None))?;
        p.hdr.ramdisk_size =
            u32::try_from(size).map_err(|_| BootError::Initrd("larger than 4 GiB", None))?;
    }
    let map = layout::e820_map(ranges);
    for (slot, &(addr, size, ty)) in p.e820_table.iter_mut().zip(map.iter()) {
        slot.addr = addr;
        slot.size = size;
        slot.r#type = ty;
    }
    p.e820_entries = map.len().min(p.e820_table.len()) as u8;
    mem.write_obj(p, GuestAddress(layout::ZERO_PAGE_START))
        .map_err(|e| BootError::Memory("zero page", e))
}

/// Writes PVH start_info, the module list (initrd) and the memory map.
pub fn write_pvh_info(
    mem: &GuestMemoryMmap<()>,
    initrd: Option<(u64, u64)>,
    ranges: &[RamRange],
) -> Result<(), BootError> {
    let mut info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        cmdline_paddr: layout::CMDLINE_START,
        memmap_paddr: layout::PVH_MEMMAP_START,
        ..Default::default()
    };
    let memmap: Vec<hvm_memmap_table_entry> = layout::e820_map(ranges)
        .into_iter()
        .take(layout::MAX_E820_ENTRIES)
        .map(|(addr, size, type_)| hvm_memmap_table_entry {
            addr,
            size,
            type_,
            reserved: 0,
        })
        .collect();
    info.memmap_entries = memmap.len() as u32;
    let mut params = BootParams::new(&info, GuestAddress(layout::PVH_INFO_START));
    if let Some((paddr, size)) = initrd {
        info.nr_modules = 1;
        info.modlist_paddr = layout::PVH_MODLIST_START;
        params = BootParams::new(&info, GuestAddress(layout::PVH_INFO_START));
        let m = hvm_modlist_entry {
            paddr,
            size,
            ..Default::default()
        };
        params.set_modules(&[m], GuestAddress(layout::PVH_MODLIST_START));
    }
    params.set_sections(&memmap, GuestAddress(layout::PVH_MEMMAP_START));
    PvhBootConfigurator::write_bootparams(&params, mem).map_err(BootError::Configurator)
}

/// Writes every structure the chosen entry mode needs.
pub fn write_boot_structures(
    mem: &GuestMemoryMmap<()>,
    mode: EntryMode,
    cmdline: &str,
    initrd: Option<(u64, u64)>,
    ranges: &[RamRange],
) -> Result<(), BootError> {
    let len = write_cmdline(mem, cmdline)?;
    match mode {
        EntryMode::Linux64 => {
            write_gdt(mem, &gdt::GDT_LONG)?;
            write_page_tables(mem)?;
            write_zero_page(mem, len, initrd, ranges)
        }
        EntryMode::Pvh => {
            write_gdt(mem, &gdt::GDT_PVH)?;
            write_pvh_info(mem, initrd, ranges)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryBackend;

    fn mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap()
    }

    #[test]
    fn zero_page_fields() {
        let m = mem();
        let ranges = layout::ram_ranges(32 << 20);
        write_boot_structures(
            &m,
            EntryMode::Linux64,
            "console=ttyS0",
            Some((0x1f0_0000, 48)),
            &ranges,
        )
        .unwrap();
        let zp = layout::ZERO_PAGE_START;
        assert_eq!(
            m.read_obj::<u32>(GuestAddress(zp + 0x218)).unwrap(),
            0x1f0_0000
        );
        assert_eq!(m.read_obj::<u32>(GuestAddress(zp + 0x21c)).unwrap(), 48);
        assert_eq!(
            m.read_obj::<u32>(GuestAddress(zp + 0x228)).unwrap(),
            layout::CMDLINE_START as u32
        );
        assert_eq!(m.read_obj::<u8>(GuestAddress(zp + 0x1e8)).unwrap(), 2);
        // PD entry for 0xd000_0000 maps it 1:1 with a 2 MiB page.
        let idx = 0xd000_0000u64 >> 21;
        let pde: u64 = m
            .read_obj(GuestAddress(layout::PDE_START + idx * 8))
            .unwrap();
        assert_eq!(pde, 0xd000_0000 | 0x83);
        let mut c = [0u8; 14];
        m.read_slice(&mut c, GuestAddress(layout::CMDLINE_START))
            .unwrap();
        assert_eq!(&c, b"console=ttyS0\0");
        assert!(m.last_addr().0 >= 0x1f0_0000);
    }

    #[test]
    fn pvh_start_info() {
        let m = mem();
        let ranges = layout::ram_ranges(32 << 20);
        write_boot_structures(&m, EntryMode::Pvh, "x", Some((0x1f0_0000, 4096)), &ranges).unwrap();
        let info: hvm_start_info = m.read_obj(GuestAddress(layout::PVH_INFO_START)).unwrap();
        assert_eq!(info.magic, PVH_MAGIC);
        assert_eq!(info.nr_modules, 1);
        assert_eq!(info.memmap_entries, 2);
        let md: hvm_modlist_entry = m.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!((md.paddr, md.size), (0x1f0_0000, 4096));
        let e: hvm_memmap_table_entry = m
            .read_obj(GuestAddress(layout::PVH_MEMMAP_START + 24))
            .unwrap();
        assert_eq!((e.addr, e.type_), (layout::HIMEM_START, 1));
    }

    #[test]
    fn cmdline_limits() {
        let m = mem();
        assert!(write_cmdline(&m, &"a".repeat(layout::CMDLINE_MAX_SIZE)).is_err());
        assert!(write_cmdline(&m, "a\0b").is_err());
    }
}
