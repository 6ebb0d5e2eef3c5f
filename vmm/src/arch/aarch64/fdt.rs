// SPDX-License-Identifier: GPL-3.0-or-later
//! The device tree an arm64 room boots with (built with vm-fdt): memory, the
//! vcpus (PSCI enable method), PSCI 0.2 over HVC, the in-kernel GIC (v3, or
//! v2 where the host offers only that), the architected timer, the 16550 UART
//! (`ns16550a`, ttyS0, also `stdout-path`) and one `virtio,mmio` node per
//! virtio device. Pure: a description in, bytes out.

use std::fmt;

use vm_fdt::FdtWriter;

use super::layout;

/// Which interrupt controller the VM got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv3: distributor + one redistributor per vcpu.
    V3,
    /// GICv2: distributor + CPU interface, at most 8 vcpus.
    V2,
}

impl GicVersion {
    /// Most vcpus this GIC serves: KVM's GICv2 addresses 8 (it refuses a 9th vcpu once the
    /// GIC exists); GICv3 as many as the layout has redistributor space for.
    pub const fn max_vcpus(self) -> usize {
        match self {
            Self::V3 => layout::MAX_VCPUS as usize,
            Self::V2 => layout::GIC_V2_MAX_VCPUS,
        }
    }
}

impl fmt::Display for GicVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V3 => "GICv3",
            Self::V2 => "GICv2",
        })
    }
}

/// Everything the tree describes.
#[derive(Debug, Clone)]
pub struct FdtConfig<'a> {
    /// `/chosen/bootargs`.
    pub cmdline: &'a str,
    /// Guest RAM ranges.
    pub ram: &'a [layout::RamRange],
    /// MPIDR_EL1 of each vcpu, in vcpu-id order.
    pub mpidrs: &'a [u64],
    /// The interrupt controller.
    pub gic: GicVersion,
    /// `(start, size)` of the initrd, if any.
    pub initrd: Option<(u64, u64)>,
    /// Number of virtio-mmio devices (windows from `VIRTIO_MMIO_BASE`).
    pub virtio_devices: u64,
}

/// Device tree errors.
#[derive(Debug)]
pub enum FdtError {
    /// vm-fdt refused a node or property.
    Writer(vm_fdt::Error),
    /// The description itself is impossible.
    Invalid(&'static str),
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Writer(e) => write!(f, "building the device tree: {e}"),
            Self::Invalid(why) => write!(f, "building the device tree: {why}"),
        }
    }
}

impl std::error::Error for FdtError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Writer(e) => Some(e),
            Self::Invalid(_) => None,
        }
    }
}

impl From<vm_fdt::Error> for FdtError {
    fn from(e: vm_fdt::Error) -> Self {
        Self::Writer(e)
    }
}

/// Phandle of the GIC (the root's `interrupt-parent`).
const GIC_PHANDLE: u32 = 1;
/// Interrupt specifier cells (GIC binding): type, number, flags.
const IRQ_SPI: u32 = 0;
const IRQ_PPI: u32 = 1;
const IRQ_EDGE_RISING: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;
/// Architected timer PPIs (INTID - 16): secure, non-secure physical, virtual, hypervisor.
const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// The part of MPIDR_EL1 that names a CPU with one address cell (Aff2..Aff0).
const MPIDR_AFF_MASK: u64 = 0x00ff_ffff;

/// Name of the UART node (also the `stdout-path`).
pub fn uart_node() -> String {
    format!("/uart@{:x}", layout::SERIAL_MMIO_ADDR)
}

/// Builds the flattened device tree.
pub fn build(c: &FdtConfig<'_>) -> Result<Vec<u8>, FdtError> {
    if c.mpidrs.is_empty() {
        return Err(FdtError::Invalid("no vcpus"));
    }
    if c.mpidrs.len() > c.gic.max_vcpus() {
        return Err(FdtError::Invalid(match c.gic {
            GicVersion::V2 => "GICv2 addresses at most 8 vcpus",
            GicVersion::V3 => "more vcpus than the GICv3 layout has redistributors for",
        }));
    }
    if c.virtio_devices > layout::MAX_VIRTIO_DEVICES {
        return Err(FdtError::Invalid("too many virtio devices"));
    }
    let mut f = FdtWriter::new()?;
    let root = f.begin_node("")?;
    f.property_string("compatible", "linux,dummy-virt")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let chosen = f.begin_node("chosen")?;
    f.property_string("bootargs", c.cmdline)?;
    f.property_string("stdout-path", &uart_node())?;
    if let Some((start, size)) = c.initrd {
        let end = start
            .checked_add(size)
            .ok_or(FdtError::Invalid("initrd wraps around"))?;
        f.property_u64("linux,initrd-start", start)?;
        f.property_u64("linux,initrd-end", end)?;
    }
    f.end_node(chosen)?;

    for &(start, len) in c.ram {
        let mem = f.begin_node(&format!("memory@{start:x}"))?;
        f.property_string("device_type", "memory")?;
        f.property_array_u64("reg", &[start, len])?;
        f.end_node(mem)?;
    }

    let cpus = f.begin_node("cpus")?;
    f.property_u32("#address-cells", 1)?;
    f.property_u32("#size-cells", 0)?;
    for &mpidr in c.mpidrs {
        let id = u32::try_from(mpidr & MPIDR_AFF_MASK).unwrap_or(0);
        let cpu = f.begin_node(&format!("cpu@{id:x}"))?;
        f.property_string("device_type", "cpu")?;
        f.property_string("compatible", "arm,arm-v8")?;
        f.property_string("enable-method", "psci")?;
        f.property_u32("reg", id)?;
        f.end_node(cpu)?;
    }
    f.end_node(cpus)?;

    let psci = f.begin_node("psci")?;
    f.property_string("compatible", "arm,psci-0.2")?;
    f.property_string("method", "hvc")?;
    f.end_node(psci)?;

    let gic = f.begin_node(&format!("intc@{:x}", layout::GIC_DIST_ADDR))?;
    match c.gic {
        GicVersion::V3 => {
            let redist = layout::GIC_REDIST_SIZE_PER_CPU * c.mpidrs.len() as u64;
            f.property_string("compatible", "arm,gic-v3")?;
            f.property_array_u64(
                "reg",
                &[
                    layout::GIC_DIST_ADDR,
                    layout::GIC_DIST_SIZE,
                    layout::GIC_REDIST_ADDR,
                    redist,
                ],
            )?;
        }
        GicVersion::V2 => {
            f.property_string("compatible", "arm,cortex-a15-gic")?;
            f.property_array_u64(
                "reg",
                &[
                    layout::GIC_DIST_ADDR,
                    layout::GIC_V2_DIST_SIZE,
                    layout::GIC_CPU_ADDR,
                    layout::GIC_CPU_SIZE,
                ],
            )?;
        }
    }
    f.property_u32("#interrupt-cells", 3)?;
    f.property_null("interrupt-controller")?;
    f.property_phandle(GIC_PHANDLE)?;
    f.end_node(gic)?;

    // GICv2 PPI specifiers carry a mask of the CPUs they reach.
    let ppi_flags = match c.gic {
        GicVersion::V3 => IRQ_LEVEL_HIGH,
        GicVersion::V2 => {
            let mask = (1u32 << c.mpidrs.len()).wrapping_sub(1) & 0xff;
            IRQ_LEVEL_HIGH | (mask << 8)
        }
    };
    let timer = f.begin_node("timer")?;
    f.property_string("compatible", "arm,armv8-timer")?;
    f.property_null("always-on")?;
    let mut irqs = Vec::with_capacity(12);
    for ppi in TIMER_PPIS {
        irqs.extend_from_slice(&[IRQ_PPI, ppi, ppi_flags]);
    }
    f.property_array_u32("interrupts", &irqs)?;
    f.end_node(timer)?;

    let uart = f.begin_node(uart_node().trim_start_matches('/'))?;
    f.property_string("compatible", "ns16550a")?;
    f.property_array_u64("reg", &[layout::SERIAL_MMIO_ADDR, layout::SERIAL_MMIO_SIZE])?;
    f.property_u32("clock-frequency", layout::SERIAL_CLOCK_HZ)?;
    f.property_array_u32(
        "interrupts",
        &[IRQ_SPI, layout::SERIAL_IRQ, IRQ_EDGE_RISING],
    )?;
    f.end_node(uart)?;

    // irqfd injects a pulse: every device interrupt is edge-triggered.
    for i in 0..c.virtio_devices {
        let base = layout::VIRTIO_MMIO_BASE + i * layout::VIRTIO_MMIO_SIZE;
        let spi = layout::VIRTIO_FIRST_GSI + i as u32;
        let v = f.begin_node(&format!("virtio_mmio@{base:x}"))?;
        f.property_string("compatible", "virtio,mmio")?;
        f.property_array_u64("reg", &[base, layout::VIRTIO_MMIO_SIZE])?;
        f.property_array_u32("interrupts", &[IRQ_SPI, spi, IRQ_EDGE_RISING])?;
        f.property_null("dma-coherent")?;
        f.end_node(v)?;
    }

    f.end_node(root)?;
    let blob = f.finish()?;
    if blob.len() as u64 > layout::FDT_MAX_SIZE {
        return Err(FdtError::Invalid("device tree larger than FDT_MAX_SIZE"));
    }
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg<'a>(mpidrs: &'a [u64], ram: &'a [layout::RamRange], gic: GicVersion) -> FdtConfig<'a> {
        FdtConfig {
            cmdline: "console=ttyS0 quiet",
            ram,
            mpidrs,
            gic,
            initrd: Some((0x8800_0000, 0x1234)),
            virtio_devices: 3,
        }
    }

    /// Decompiles with dtc (device-tree-compiler, installed by scripts/setup.sh):
    /// the kernel's own parser rules, and readable assertions.
    fn dts(blob: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.dtb");
        std::fs::write(&p, blob).unwrap();
        let out = std::process::Command::new("dtc")
            .args(["-I", "dtb", "-O", "dts", "-q"])
            .arg(&p)
            .output()
            .expect("dtc not found: apt-get install device-tree-compiler (scripts/setup.sh)");
        assert!(
            out.status.success(),
            "dtc rejects our tree: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn contains(blob: &[u8], s: &str) -> bool {
        blob.windows(s.len()).any(|w| w == s.as_bytes())
    }

    #[test]
    fn tree_describes_the_machine() {
        let ram = layout::ram_ranges(128 << 20);
        let blob = build(&cfg(&[0x8000_0000, 0x8000_0001], &ram, GicVersion::V3)).unwrap();
        assert_eq!(&blob[..4], &[0xd0, 0x0d, 0xfe, 0xed], "FDT magic");
        for s in [
            "linux,dummy-virt",
            "console=ttyS0 quiet",
            "arm,gic-v3",
            "arm,armv8-timer",
            "arm,psci-0.2",
            "ns16550a",
            "virtio,mmio",
            "/uart@40001000",
            "cpu@1",
            "virtio_mmio@40102000",
            "memory@80000000",
        ] {
            assert!(contains(&blob, s), "{s} missing");
        }
        assert!(!contains(&blob, "virtio_mmio@40103000"));
        {
            let t = dts(&blob);
            assert!(t.contains("linux,initrd-start = <0x00 0x88000000>"), "{t}");
            assert!(t.contains("linux,initrd-end = <0x00 0x88001234>"), "{t}");
            assert!(t.contains("reg = <0x00 0x80000000 0x00 0x8000000>"), "{t}");
            // Two vcpus: two redistributors of 128 KiB after the 64 KiB distributor.
            assert!(
                t.contains("reg = <0x00 0x48000000 0x00 0x10000 0x00 0x48010000 0x00 0x40000>"),
                "{t}"
            );
            assert!(t.contains("interrupts = <0x00 0x02 0x01>"), "{t}");
            assert!(t.contains("interrupts = <0x00 0x00 0x01>"), "{t}");
            assert!(
                t.contains(
                    "interrupts = <0x01 0x0d 0x04 0x01 0x0e 0x04 0x01 0x0b 0x04 0x01 0x0a 0x04>"
                ),
                "{t}"
            );
        }
    }

    #[test]
    fn gicv2_tree_and_its_limits() {
        let ram = layout::ram_ranges(64 << 20);
        let blob = build(&cfg(&[0x8000_0000], &ram, GicVersion::V2)).unwrap();
        assert!(contains(&blob, "arm,cortex-a15-gic"));
        {
            let t = dts(&blob);
            // One CPU: the PPI mask is 0b1.
            assert!(t.contains("0x01 0x0b 0x104"), "{t}");
        }
        let nine: Vec<u64> = (0..9).collect();
        assert!(build(&cfg(&nine, &ram, GicVersion::V2)).is_err());
        assert!(build(&cfg(&nine, &ram, GicVersion::V3)).is_ok());
        assert_eq!(GicVersion::V2.max_vcpus(), 8);
        assert_eq!(GicVersion::V3.max_vcpus(), layout::MAX_VCPUS as usize);
        let seventeen: Vec<u64> = (0..17).collect();
        assert!(build(&cfg(&seventeen, &ram, GicVersion::V3)).is_err());
        assert!(build(&cfg(&[], &ram, GicVersion::V3)).is_err());
        let mut c = cfg(&[0], &ram, GicVersion::V3);
        c.virtio_devices = layout::MAX_VIRTIO_DEVICES + 1;
        assert!(build(&c).is_err());
        c.virtio_devices = 0;
        c.initrd = Some((u64::MAX, 2));
        assert!(build(&c).is_err());
    }

    #[test]
    fn sixteen_vcpus_and_a_long_command_line_fit() {
        let ram = layout::ram_ranges(16 << 30);
        let mpidrs: Vec<u64> = (0..16)
            .map(|i| 0x8000_0000 | (i & 0xf) | ((i >> 4) << 8))
            .collect();
        let line = "x".repeat(layout::CMDLINE_MAX_SIZE - 1);
        let mut c = cfg(&mpidrs, &ram, GicVersion::V3);
        c.cmdline = &line;
        c.virtio_devices = layout::MAX_VIRTIO_DEVICES;
        let blob = build(&c).unwrap();
        assert!((blob.len() as u64) < layout::FDT_MAX_SIZE);
    }
}
