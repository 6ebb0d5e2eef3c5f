// SPDX-License-Identifier: GPL-3.0-or-later
//! aarch64 boot: the Linux arm64 Image protocol. The kernel goes at the start
//! of RAM + `text_offset`, the device tree in the last 2 MiB block of RAM,
//! the initrd page-aligned just below the device tree; vcpu 0 enters the
//! Image with the MMU off and x0 = the device tree's address.
//! Loading is plain file/memory work (unit-tested on any host);
//! `write_boot_structures` needs the aarch64 KVM objects.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, ReadVolatile};

use super::image::{self, ImageError};
use super::layout::{self, RamRange};

/// Boot errors.
#[derive(Debug)]
pub enum BootError {
    /// Reading the kernel or initrd file.
    Io(&'static str, std::io::Error),
    /// The kernel is not a usable arm64 Image.
    Image(ImageError),
    /// The initrd does not fit.
    Initrd(&'static str),
    /// Guest RAM is too small to hold the device tree.
    NoRoomForFdt,
    /// Writing to guest memory failed.
    Memory(&'static str, vm_memory::GuestMemoryError),
    /// The device tree could not be built.
    Fdt(super::fdt::FdtError),
    /// A KVM step (GIC init, reading MPIDR).
    #[cfg(target_arch = "aarch64")]
    Kvm(super::kvm::KvmError),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(what, e) => write!(f, "reading the {what}: {e}"),
            Self::Image(e) => write!(f, "cannot load kernel: {e}"),
            Self::Initrd(why) => write!(f, "initrd: {why}"),
            Self::NoRoomForFdt => f.write_str("guest RAM is too small for the device tree"),
            Self::Memory(what, e) => write!(f, "writing {what} to guest memory: {e}"),
            Self::Fdt(e) => e.fmt(f),
            #[cfg(target_arch = "aarch64")]
            Self::Kvm(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BootError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(_, e) => Some(e),
            Self::Image(e) => Some(e),
            Self::Memory(_, e) => Some(e),
            Self::Fdt(e) => Some(e),
            #[cfg(target_arch = "aarch64")]
            Self::Kvm(e) => Some(e),
            Self::Initrd(_) | Self::NoRoomForFdt => None,
        }
    }
}

/// How the boot vcpu enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// arm64 Linux `Image` protocol: x0 = FDT address, MMU off.
    Image,
}

/// Where and how to start the boot vcpu.
#[derive(Debug, Clone, Copy)]
pub struct KernelEntry {
    /// Entry point (guest-physical) = load address.
    pub entry: u64,
    /// Protocol.
    pub mode: EntryMode,
    /// End of the memory the kernel may use (`image_size` counted).
    pub kernel_end: u64,
    /// Where the device tree goes (x0 at entry).
    pub fdt_addr: u64,
}

fn ram_end(mem: &GuestMemoryMmap<()>) -> u64 {
    mem.last_addr().0.saturating_add(1)
}

/// Loads an arm64 Image, read from `file` (a file, or a mapped one), at the start of
/// RAM + text_offset.
pub fn load_kernel<F>(mem: &GuestMemoryMmap<()>, file: &mut F) -> Result<KernelEntry, BootError>
where
    F: Read + Seek + ReadVolatile,
{
    let fdt_addr = layout::fdt_addr(ram_end(mem)).ok_or(BootError::NoRoomForFdt)?;
    let file_len = file
        .seek(SeekFrom::End(0))
        .map_err(|e| BootError::Io("kernel", e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| BootError::Io("kernel", e))?;
    let mut head = [0u8; image::HEADER_SIZE];
    let got = file
        .read(&mut head)
        .map_err(|e| BootError::Io("kernel", e))?;
    let header =
        image::parse_header(head.get(..got).unwrap_or_default()).map_err(BootError::Image)?;
    let p =
        image::place(&header, file_len, layout::DRAM_START, fdt_addr).map_err(BootError::Image)?;
    let len = usize::try_from(file_len).map_err(|_| {
        BootError::Image(ImageError::DoesNotFit {
            size: file_len,
            limit: fdt_addr,
        })
    })?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| BootError::Io("kernel", e))?;
    mem.read_exact_volatile_from(GuestAddress(p.load), file, len)
        .map_err(|e| BootError::Memory("kernel", e))?;
    Ok(KernelEntry {
        entry: p.load,
        mode: EntryMode::Image,
        kernel_end: p.end,
        fdt_addr,
    })
}

/// Loads the initrd page-aligned just below the device tree, above the
/// kernel. Returns (addr, size).
pub fn load_initrd(
    mem: &GuestMemoryMmap<()>,
    file: &mut File,
    _ranges: &[RamRange],
    kernel_end: u64,
) -> Result<(u64, u64), BootError> {
    let fdt = layout::fdt_addr(ram_end(mem)).ok_or(BootError::NoRoomForFdt)?;
    let size = file
        .metadata()
        .map_err(|e| BootError::Io("initrd", e))?
        .len();
    let addr = fdt
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|&a| a >= kernel_end)
        .ok_or(BootError::Initrd("does not fit in guest memory"))?;
    let len = usize::try_from(size).map_err(|_| BootError::Initrd("too large"))?;
    mem.read_exact_volatile_from(GuestAddress(addr), file, len)
        .map_err(|e| BootError::Memory("initrd", e))?;
    Ok((addr, size))
}

/// Builds the device tree for `cfg` and writes it at `addr`.
pub fn write_fdt(
    mem: &GuestMemoryMmap<()>,
    addr: u64,
    cfg: &super::fdt::FdtConfig<'_>,
) -> Result<(), BootError> {
    if cfg.cmdline.len() >= layout::CMDLINE_MAX_SIZE {
        return Err(BootError::Fdt(super::fdt::FdtError::Invalid(
            "kernel command line too long",
        )));
    }
    let blob = super::fdt::build(cfg).map_err(BootError::Fdt)?;
    mem.write_slice(&blob, GuestAddress(addr))
        .map_err(|e| BootError::Memory("device tree", e))
}

/// After every vcpu exists: initialises the GIC and writes the device tree
/// (it names each vcpu by its MPIDR and the GIC by its version).
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)] // one call site (the builder); each is a distinct input
pub fn write_boot_structures(
    vm: &kvm_ioctls::VmFd,
    gic: &super::kvm::Gic,
    mem: &GuestMemoryMmap<()>,
    vcpus: &[kvm_ioctls::VcpuFd],
    entry: &KernelEntry,
    cmdline: &str,
    initrd: Option<(u64, u64)>,
    ranges: &[RamRange],
    virtio_devices: u64,
) -> Result<(), BootError> {
    gic.init(vm, vcpus.len()).map_err(BootError::Kvm)?;
    let mpidrs = vcpus
        .iter()
        .map(super::kvm::mpidr)
        .collect::<Result<Vec<u64>, _>>()
        .map_err(BootError::Kvm)?;
    let cfg = super::fdt::FdtConfig {
        cmdline,
        ram: ranges,
        mpidrs: &mpidrs,
        gic: gic.version,
        initrd,
        virtio_devices,
    };
    write_fdt(mem, entry.fdt_addr, &cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn mem(mib: u64) -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(layout::DRAM_START), (mib << 20) as usize)])
            .unwrap()
    }

    fn image_file(text_offset: u64, image_size: u64, len: usize) -> File {
        let mut f = tempfile::tempfile().unwrap();
        let mut b = vec![0x5au8; len];
        b[..image::HEADER_SIZE].fill(0);
        b[8..16].copy_from_slice(&text_offset.to_le_bytes());
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[56..60].copy_from_slice(&image::MAGIC.to_le_bytes());
        f.write_all(&b).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f
    }

    #[test]
    fn image_initrd_and_fdt_are_placed_without_overlap() {
        let m = mem(64);
        let mut k = image_file(0x8_0000, 0x30_0000, 0x10_0000);
        let e = load_kernel(&m, &mut k).unwrap();
        assert_eq!(e.entry, layout::DRAM_START + 0x8_0000);
        assert_eq!(e.kernel_end, e.entry + 0x30_0000);
        assert_eq!(e.fdt_addr, layout::DRAM_START + (62 << 20));
        let mut b = [0u8; 4];
        m.read_slice(&mut b, GuestAddress(e.entry + 0x1000))
            .unwrap();
        assert_eq!(b, [0x5a; 4], "file contents at the load address");

        let mut rd = tempfile::tempfile().unwrap();
        rd.write_all(&vec![7u8; 5000]).unwrap();
        rd.seek(SeekFrom::Start(0)).unwrap();
        let (a, s) = load_initrd(&m, &mut rd, &[], e.kernel_end).unwrap();
        assert_eq!(s, 5000);
        assert_eq!(a % 4096, 0);
        assert!(a >= e.kernel_end && a + s <= e.fdt_addr);

        let ranges = layout::ram_ranges(64 << 20);
        let cfg = super::super::fdt::FdtConfig {
            cmdline: "console=ttyS0",
            ram: &ranges,
            mpidrs: &[0x8000_0000],
            gic: super::super::fdt::GicVersion::V3,
            initrd: Some((a, s)),
            virtio_devices: 2,
        };
        write_fdt(&m, e.fdt_addr, &cfg).unwrap();
        let magic: u32 = m.read_obj(GuestAddress(e.fdt_addr)).unwrap();
        assert_eq!(u32::from_be(magic), 0xd00d_feed);
    }

    #[test]
    fn hostile_kernels_and_initrds_are_refused() {
        let m = mem(16);
        // An image claiming more memory than the guest has.
        let mut k = image_file(0, 1 << 40, 4096);
        assert!(matches!(
            load_kernel(&m, &mut k),
            Err(BootError::Image(ImageError::DoesNotFit { .. }))
        ));
        // Not an Image at all (a truncated file, an ELF).
        let mut short = tempfile::tempfile().unwrap();
        short.write_all(b"\x7fELF").unwrap();
        short.seek(SeekFrom::Start(0)).unwrap();
        assert!(matches!(
            load_kernel(&m, &mut short),
            Err(BootError::Image(ImageError::TooShort(4)))
        ));
        // An initrd larger than the space between kernel and device tree.
        let mut k = image_file(0, 0x40_0000, 4096);
        let e = load_kernel(&m, &mut k).unwrap();
        let mut rd = tempfile::tempfile().unwrap();
        rd.set_len(15 << 20).unwrap();
        assert!(matches!(
            load_initrd(&m, &mut rd, &[], e.kernel_end),
            Err(BootError::Initrd(_))
        ));
        // A command line at the arm64 limit is refused before the tree is built.
        let ranges = layout::ram_ranges(16 << 20);
        let long = "y".repeat(layout::CMDLINE_MAX_SIZE);
        let cfg = super::super::fdt::FdtConfig {
            cmdline: &long,
            ram: &ranges,
            mpidrs: &[0],
            gic: super::super::fdt::GicVersion::V3,
            initrd: None,
            virtio_devices: 0,
        };
        assert!(write_fdt(&m, e.fdt_addr, &cfg).is_err());
    }
}
