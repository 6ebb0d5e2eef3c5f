// SPDX-License-Identifier: GPL-3.0-or-later
//! Builds a VM from a `VmConfig`: memory, KVM VM, kernel/initrd, devices,
//! boot structures and vcpus. Running it is `runner`'s job.

use std::fmt;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::VcpuFd;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::arch::current::boot::{self, BootError, KernelEntry};
use crate::arch::current::layout;
#[cfg(target_arch = "x86_64")]
use crate::arch::current::{ioapic, mptable};
use crate::arch::mapped::MappedReader;
use crate::config::{NetConfig, VmConfig};
use crate::devices::boot_timer::BootTimer;
use crate::devices::bus::{BusError, MmioBusBuilder};
use crate::devices::i8042::I8042;
use crate::devices::serial::{SerialDevice, SerialError, SerialTarget, Sink};
use crate::devices::serial_flush::SerialFlush;
use crate::devices::serial_input::SerialInput;
use crate::devices::virtio;
use crate::exit::ExitLatch;
use crate::vstate::memory::{self, MemoryError};
use crate::vstate::vcpu::{self, PortDevices, VcpuCtx, VcpuError};
use crate::vstate::vm::{Vm, VmError};

/// KVM memory slot of the first virtio device's register page (guest RAM takes the slots
/// from 0, one per region; a few at most).
const REGISTER_PAGE_FIRST_SLOT: u32 = 32;

/// The event manager type run on the VMM thread.
pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Build errors (all map to exit code 3).
#[derive(Debug)]
pub enum BuildError {
    /// Opening the kernel or initrd.
    Open(&'static str, PathBuf, std::io::Error),
    /// Guest memory.
    Memory(MemoryError),
    /// KVM VM setup.
    Vm(VmError),
    /// Kernel/initrd/boot structures.
    Boot(BootError),
    /// vcpu setup.
    Vcpu(VcpuError),
    /// MP table.
    #[cfg(target_arch = "x86_64")]
    Mptable(mptable::MptableError),
    /// Serial output target.
    Serial(SerialError),
    /// MMIO bus layout.
    Bus(BusError),
    /// A virtio device.
    Virtio(&'static str, virtio::VirtioError),
    /// The event manager.
    EventManager(event_manager::Error),
    /// Creating an eventfd.
    EventFd(std::io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open(what, p, e) => write!(f, "cannot open {what} {}: {e}", p.display()),
            Self::Memory(e) => e.fmt(f),
            Self::Vm(e) => e.fmt(f),
            Self::Boot(e) => e.fmt(f),
            Self::Vcpu(e) => e.fmt(f),
            #[cfg(target_arch = "x86_64")]
            Self::Mptable(e) => e.fmt(f),
            Self::Serial(e) => e.fmt(f),
            Self::Bus(e) => e.fmt(f),
            Self::Virtio(dev, e) => match std::error::Error::source(e) {
                Some(cause) => write!(f, "{dev}: {e}: {cause}"),
                None => write!(f, "{dev}: {e}"),
            },
            Self::EventManager(e) => write!(f, "event manager: {e:?}"),
            Self::EventFd(e) => write!(f, "eventfd: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// A VM ready to run.
pub struct Built {
    /// Guest memory (kept alive for the life of the process).
    pub mem: GuestMemoryMmap<()>,
    /// The VM (kept alive for the life of the process).
    pub vm: Vm,
    /// vcpu fds, index = vcpu id.
    pub vcpus: Vec<VcpuFd>,
    /// Shared vcpu context.
    pub ctx: VcpuCtx,
    /// Event loop with every device subscriber.
    pub events: EventManager<Subscriber>,
    /// The final kernel command line.
    pub cmdline: String,
    /// Per-vcpu KVM statistics (`--exit-stats`; empty otherwise).
    pub stats: Vec<crate::stats::StatsFd>,
}

impl fmt::Debug for Built {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Built")
            .field("vcpus", &self.vcpus.len())
            .field("cmdline", &self.cmdline)
            .finish()
    }
}

fn open(what: &'static str, p: &PathBuf) -> Result<File, BuildError> {
    File::open(p).map_err(|e| BuildError::Open(what, p.clone(), e))
}

/// The `virtio_mmio.device=` entry for device `index`.
pub fn virtio_cmdline_entry(index: u64) -> String {
    let base = layout::VIRTIO_MMIO_BASE + index * layout::VIRTIO_MMIO_SIZE;
    let irq = u64::from(layout::VIRTIO_FIRST_GSI) + index;
    format!("virtio_mmio.device=4K@{base:#x}:{irq}")
}

/// Builds everything; nothing runs yet. Guest memory is registered with KVM first, right
/// after the VM exists: no vcpu ioctl runs at the same time (see `Vm::new`). Call it
/// once, before the process opens any descriptor of its own: `cfg`'s `--net-fd` and
/// `--net-host-fd` are taken over as inherited descriptors (owned by nothing else).
pub fn build(cfg: &VmConfig, start: Instant) -> Result<Built, BuildError> {
    // The network backend first: an inherited descriptor must be claimed before this
    // process opens any of its own, and a missing backend fails the start at once.
    let net = match &cfg.net {
        None => None,
        Some(NetConfig::Uds(p)) => Some(virtio::connect_net_backend(p)),
        // SAFETY: inherited from the command line (>= 3, distinct from --net-host-fd:
        // `config`), claimed here, first, before this process opens a descriptor.
        Some(NetConfig::Fd(fd)) => Some(unsafe { virtio::adopt_net_backend(*fd) }),
    }
    .transpose()
    .map_err(|e| BuildError::Virtio("virtio-net", e))?;
    let net_host = cfg
        .net_host_fd
        // SAFETY: as for --net-fd above, and distinct from it (`config`).
        .map(|fd| unsafe { virtio::adopt_net_host(fd) })
        .transpose()
        .map_err(|e| BuildError::Virtio("virtio-net", e))?;
    let net = net.map(|n| (n, net_host));
    let kernel_file = open("kernel", &cfg.kernel)?;
    // Copied from a mapping, not read (see `crate::sys::FileMap`); unmapped when `build` returns.
    // Read in up front only if it can fit in guest RAM: a larger file cannot load (an arm64
    // Image is loaded whole, an ELF's segments must fit), and only its header is read.
    let kernel_map = crate::sys::FileMap::new(&kernel_file, cfg.mem_mib.saturating_mul(1 << 20))
        .map_err(|e| BuildError::Open("kernel", cfg.kernel.clone(), e))?;
    let mut kernel = MappedReader::new(kernel_map.volatile());
    let initrd = cfg.initrd.as_ref().map(|p| open("initrd", p)).transpose()?;
    let (mem, ranges) = memory::create(cfg.mem_mib).map_err(BuildError::Memory)?;
    #[cfg(not(target_arch = "aarch64"))]
    let vm = Vm::new(layout::ioapic_pins(cfg.virtio_devices())).map_err(BuildError::Vm)?;
    #[cfg(target_arch = "aarch64")]
    let vm = Vm::with_type(cfg.vm_type, usize::from(cfg.vcpus)).map_err(BuildError::Vm)?;
    vm.register_memory(&mem).map_err(BuildError::Vm)?;
    let opened = Opened {
        kernel: &mut kernel,
        initrd,
        net,
    };
    let (vcpus, ctx, events, cmdline) = setup(cfg, start, &vm, &mem, &ranges, opened)?;
    let stats = if cfg.exit_stats {
        exit_stats(&vcpus)
    } else {
        Vec::new()
    };
    Ok(Built {
        mem,
        vm,
        vcpus,
        ctx,
        events,
        cmdline,
        stats,
    })
}

type Parts = (Vec<VcpuFd>, VcpuCtx, EventManager<Subscriber>, String);

/// Opens each vcpu's KVM statistics; says once if KVM has none (the line then only
/// counts notify exits).
fn exit_stats(vcpus: &[VcpuFd]) -> Vec<crate::stats::StatsFd> {
    let mut out = Vec::with_capacity(vcpus.len());
    for v in vcpus {
        match crate::sys::vcpu_stats_fd(v).and_then(crate::stats::StatsFd::new) {
            Ok(s) => out.push(s),
            Err(e) => {
                crate::log::say(format_args!("--exit-stats: no KVM statistics: {e}"));
                return Vec::new();
            }
        }
    }
    out
}

/// What `build` opened before the VM existed.
struct Opened<'a, 'm> {
    kernel: &'a mut MappedReader<'m>,
    initrd: Option<File>,
    /// The virtio-net backend socket, and what follows the anchor host's own networks.
    net: Option<(
        std::os::unix::net::UnixStream,
        Option<virtio::net::host::HostNets>,
    )>,
}

fn setup(
    cfg: &VmConfig,
    start: Instant,
    vm: &Vm,
    mem: &GuestMemoryMmap<()>,
    ranges: &[layout::RamRange],
    opened: Opened<'_, '_>,
) -> Result<Parts, BuildError> {
    let Opened {
        kernel,
        mut initrd,
        net,
    } = opened;
    let entry: KernelEntry = boot::load_kernel(mem, kernel).map_err(BuildError::Boot)?;
    let initrd = match initrd.as_mut() {
        Some(f) => {
            Some(boot::load_initrd(mem, f, ranges, entry.kernel_end).map_err(BuildError::Boot)?)
        }
        None => None,
    };

    let latch = Arc::new(ExitLatch::new().map_err(BuildError::EventFd)?);
    let mut sink = Sink::open(&cfg.serial).map_err(BuildError::Serial)?;
    // Whole lines, one write each (the stdout console is shared with other writers); a
    // line left open is written out shortly after it started (`serial_flush`).
    let line_started = EventFd::new(libc::EFD_NONBLOCK).map_err(BuildError::EventFd)?;
    sink = sink.with_partial_notify(line_started.try_clone().map_err(BuildError::EventFd)?);
    let serial_irq = vm.irq_line(layout::SERIAL_IRQ).map_err(BuildError::Vm)?;
    let input_room = EventFd::new(libc::EFD_NONBLOCK).map_err(BuildError::EventFd)?;
    let input_room_dev = input_room.try_clone().map_err(BuildError::EventFd)?;
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        serial_irq,
        sink,
        input_room_dev,
    )));
    let ports = Arc::new(PortDevices {
        serial: serial.clone(),
        i8042: Mutex::new(I8042::new()),
    });

    let mut events: EventManager<Subscriber> =
        EventManager::new().map_err(BuildError::EventManager)?;
    let flush = SerialFlush::new(serial.clone(), line_started).map_err(BuildError::EventFd)?;
    events.add_subscriber(Arc::new(Mutex::new(flush)));
    if cfg.serial == SerialTarget::Stdout {
        // The console is interactive: what is typed on stdin goes to the guest.
        let stdin = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(BuildError::EventFd)?;
        events.add_subscriber(Arc::new(Mutex::new(SerialInput::new(
            serial, stdin, input_room,
        ))));
    }
    let mut bus = MmioBusBuilder::new();
    #[cfg(target_arch = "x86_64")]
    bus.insert(
        ioapic::IOAPIC_BASE,
        ioapic::IOAPIC_SIZE,
        Arc::new(Mutex::new(ioapic::IoapicMmio(vm.ioapic.clone()))),
    )
    .map_err(BuildError::Bus)?;
    // aarch64 has no port I/O: the same UART sits in an MMIO window.
    #[cfg(target_arch = "aarch64")]
    bus.insert(
        layout::SERIAL_MMIO_ADDR,
        layout::SERIAL_MMIO_SIZE,
        Arc::new(Mutex::new(crate::arch::current::serial::SerialMmio(
            ports.serial.clone(),
        ))),
    )
    .map_err(BuildError::Bus)?;
    if cfg.boot_timer {
        bus.insert(
            layout::BOOT_TIMER_ADDR,
            layout::BOOT_TIMER_SIZE,
            Arc::new(Mutex::new(BootTimer::new(start))),
        )
        .map_err(BuildError::Bus)?;
    }

    // Fixed order: disks, rng, vsock, net.
    let mut cmdline = cfg.cmdline.clone();
    let mut index = 0u64;
    // Queue notifications: a KVM ioeventfd per queue on QueueNotify (datamatch = queue
    // index), registered when the driver first sets DRIVER_OK, so a notify never leaves
    // the kernel after that; before it, without the capability (said once, here) or when
    // registering fails, the notify exits and the transport signals the same eventfd from
    // the vcpu thread.
    let ioeventfd = vm.has_ioeventfd();
    if !ioeventfd {
        crate::log::say(format_args!(
            "KVM lacks KVM_CAP_IOEVENTFD: virtio queue notifications exit to the VMM (slower)"
        ));
    }
    // Register reads: on x86_64 each device's register page is the guest's read-only view
    // of its window (a KVM memory slot), so reads never exit; writes still do. aarch64
    // keeps the exits: the guest maps the window as Device memory while the VMM writes the
    // page through a cacheable mapping, and without stage-2 forced write-back (FEAT_S2FWB,
    // which the Duet 5's cores lack) the guest could read stale values.
    let readonly_mem = cfg!(target_arch = "x86_64") && vm.has_readonly_mem();
    let register_pages = readonly_mem && !cfg.test_register_reads_exit;
    if cfg!(target_arch = "x86_64") && !readonly_mem {
        crate::log::say(format_args!(
            "KVM lacks KVM_CAP_READONLY_MEM: virtio register reads exit to the VMM (slower)"
        ));
    }
    let mut add = |handle: virtio::VirtioDeviceHandle,
                   bus: &mut MmioBusBuilder,
                   events: &mut EventManager<Subscriber>,
                   index: &mut u64|
     -> Result<(), BuildError> {
        let base = layout::VIRTIO_MMIO_BASE + *index * layout::VIRTIO_MMIO_SIZE;
        if ioeventfd {
            // Armed now, registered at the driver's first DRIVER_OK (see LazyNotify).
            let addr = base + virtio::mmio::reg::QUEUE_NOTIFY;
            handle.lazy_notify.arm(vm.notify_registrar(addr, *index));
        }
        bus.insert(base, layout::VIRTIO_MMIO_SIZE, handle.mmio)
            .map_err(BuildError::Bus)?;
        if register_pages {
            let slot =
                REGISTER_PAGE_FIRST_SLOT.saturating_add(u32::try_from(*index).unwrap_or(u32::MAX));
            if let Err(e) = vm.map_register_page(slot, base, &handle.registers) {
                crate::log::say(format_args!(
                    "virtio device {index}: register reads exit to the VMM: {e}"
                ));
            }
        }
        events.add_subscriber(handle.subscriber);
        // x86_64 rooms learn their devices from the command line; aarch64
        // rooms from the device tree (a GIC interrupt is not a Linux IRQ number).
        if cfg!(not(target_arch = "aarch64")) {
            cmdline.push(' ');
            cmdline.push_str(&virtio_cmdline_entry(*index));
        }
        *index += 1;
        Ok(())
    };
    let gsi = |i: u64| layout::VIRTIO_FIRST_GSI + i as u32;
    for d in &cfg.disks {
        let irq = vm.irq_line(gsi(index)).map_err(BuildError::Vm)?;
        let bc = virtio::BlockConfig {
            path: d.path.clone(),
            read_only: d.read_only,
        };
        let h = virtio::build_block(mem.clone(), irq, &bc)
            .map_err(|e| BuildError::Virtio("virtio-blk", e))?;
        add(h, &mut bus, &mut events, &mut index)?;
    }
    let irq = vm.irq_line(gsi(index)).map_err(BuildError::Vm)?;
    let unready = std::time::Duration::from_millis(cfg.test_entropy_unready_ms);
    let h = virtio::build_rng(mem.clone(), irq, unready)
        .map_err(|e| BuildError::Virtio("virtio-rng", e))?;
    add(h, &mut bus, &mut events, &mut index)?;
    if let Some(v) = &cfg.vsock {
        let irq = vm.irq_line(gsi(index)).map_err(BuildError::Vm)?;
        let vc = virtio::VsockConfig {
            guest_cid: v.cid,
            uds_path: v.uds.clone(),
        };
        let h = virtio::build_vsock(mem.clone(), irq, &vc)
            .map_err(|e| BuildError::Virtio("virtio-vsock", e))?;
        add(h, &mut bus, &mut events, &mut index)?;
    }
    if let Some((backend, net_host)) = net {
        let irq = vm.irq_line(gsi(index)).map_err(BuildError::Vm)?;
        let h = virtio::build_net(mem.clone(), irq, backend, cfg.net_deny.clone(), net_host)
            .map_err(|e| BuildError::Virtio("virtio-net", e))?;
        add(h, &mut bus, &mut events, &mut index)?;
    }

    #[cfg(not(target_arch = "aarch64"))]
    boot::write_boot_structures(mem, entry.mode, &cmdline, initrd, ranges)
        .map_err(BuildError::Boot)?;
    #[cfg(target_arch = "x86_64")]
    mptable::write(mem, cfg.vcpus, vm.ioapic.pins()).map_err(BuildError::Mptable)?;

    let mut vcpus = Vec::with_capacity(usize::from(cfg.vcpus));
    for id in 0..cfg.vcpus {
        vcpus.push(vcpu::create(vm, id, cfg.vcpus, &entry).map_err(BuildError::Vcpu)?);
    }
    // aarch64: the GIC is initialised and the device tree (naming every vcpu
    // and device) written only now that all vcpus exist.
    #[cfg(target_arch = "aarch64")]
    boot::write_boot_structures(
        &vm.fd, &vm.gic, mem, &vcpus, &entry, &cmdline, initrd, ranges, index,
    )
    .map_err(BuildError::Boot)?;
    let ctx = VcpuCtx {
        bus: bus.build(),
        ports,
        latch,
    };
    Ok((vcpus, ctx, events, cmdline))
}

// The contract values below are the x86_64 layout's.
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn cmdline_entries_follow_the_contract() {
        assert_eq!(
            virtio_cmdline_entry(0),
            "virtio_mmio.device=4K@0xd0000000:5"
        );
        assert_eq!(
            virtio_cmdline_entry(2),
            "virtio_mmio.device=4K@0xd0002000:7"
        );
    }
}
