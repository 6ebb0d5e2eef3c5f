// SPDX-License-Identifier: GPL-3.0-or-later
//! The KVM VM: memory slots, the interrupt controller (x86_64: KVM's split irqchip, i.e.
//! in-kernel local APICs plus the VMM's own IOAPIC; no in-kernel PIC, IOAPIC or PIT),
//! TSS, device interrupt lines, queue-notify ioeventfds.

use std::fmt;

use std::sync::Arc;

use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

#[cfg(target_arch = "x86_64")]
use crate::arch::current::ioapic::{Ioapic, IoapicPin, MsiSink, MAX_PINS};
#[cfg(target_arch = "x86_64")]
use crate::arch::current::layout;
use crate::devices::irq::IrqLine;
use crate::devices::virtio::NotifyRegistrar;

/// VM errors.
#[derive(Debug)]
pub enum VmError {
    /// A KVM step failed: the step plus KVM's errno.
    Kvm {
        /// The failing step.
        step: &'static str,
        /// KVM's error.
        source: kvm_ioctls::Error,
    },
    /// aarch64: VM type, GIC.
    #[cfg(target_arch = "aarch64")]
    Arch(crate::arch::current::kvm::KvmError),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kvm { step, source } => write!(f, "{step}: {source}"),
            #[cfg(target_arch = "aarch64")]
            Self::Arch(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for VmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Kvm { source, .. } => Some(source),
            #[cfg(target_arch = "aarch64")]
            Self::Arch(e) => Some(e),
        }
    }
}

fn step(step: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { step, source }
}

/// An initialised VM.
#[derive(Debug)]
pub struct Vm {
    /// /dev/kvm handle (needed for CPUID queries).
    pub kvm: Kvm,
    /// The VM fd (shared with the IOAPIC, which injects interrupts through it).
    pub fd: Arc<VmFd>,
    /// The userspace IOAPIC (its MMIO window goes on the bus).
    #[cfg(target_arch = "x86_64")]
    pub ioapic: Arc<Ioapic>,
    /// aarch64: the in-kernel GIC (initialised once the vcpus exist).
    #[cfg(target_arch = "aarch64")]
    pub gic: crate::arch::current::kvm::Gic,
}

/// KVM_SIGNAL_MSI: a message straight to the local APICs (one ioctl, no exit).
#[cfg(target_arch = "x86_64")]
struct KvmMsi(Arc<VmFd>);

#[cfg(target_arch = "x86_64")]
impl MsiSink for KvmMsi {
    fn signal(&self, address: u64, data: u32) {
        let msi = kvm_bindings::kvm_msi {
            address_lo: (address & 0xffff_ffff) as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        // 0 = nobody accepted it (no such APIC, APIC disabled): the guest's business.
        let _ = self.0.signal_msi(msi);
    }
}

impl Vm {
    /// Opens /dev/kvm, creates the VM with KVM's split irqchip (local APICs in the kernel,
    /// the IOAPIC here, with `pins` pins; no PIC, no PIT: rooms boot with the TSC-deadline
    /// LAPIC timer) and the TSS. Guest memory is registered separately
    /// (`register_memory`), before any vcpu exists: KVM waits for an SRCU grace period on
    /// every memory-slot change, and that wait grows when vcpu ioctls run at the same time.
    #[cfg(target_arch = "x86_64")]
    pub fn new(pins: usize) -> Result<Self, VmError> {
        let kvm = Kvm::new().map_err(step("cannot open /dev/kvm"))?;
        let fd = Arc::new(kvm.create_vm().map_err(step("KVM_CREATE_VM"))?);
        fd.set_tss_address(layout::KVM_TSS_ADDRESS as usize)
            .map_err(step("KVM_SET_TSS_ADDR"))?;
        fd.set_identity_map_address(layout::KVM_IDENTITY_MAP_ADDRESS)
            .map_err(step("KVM_SET_IDENTITY_MAP_ADDR"))?;
        let mut split = kvm_bindings::kvm_enable_cap {
            cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP,
            ..Default::default()
        };
        // Pins reserved for IOAPIC routes (we use none: messages go by KVM_SIGNAL_MSI).
        split.args[0] = MAX_PINS as u64;
        fd.enable_cap(&split)
            .map_err(step("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)"))?;
        let ioapic = Arc::new(Ioapic::new(pins, Box::new(KvmMsi(fd.clone()))));
        Ok(Self { kvm, fd, ioapic })
    }

    /// The interrupt line of device interrupt `gsi` (an IOAPIC pin).
    #[cfg(target_arch = "x86_64")]
    pub fn irq_line(&self, gsi: u32) -> Result<IrqLine, VmError> {
        let pin = usize::try_from(gsi)
            .ok()
            .filter(|p| *p < self.ioapic.pins())
            .ok_or(VmError::Kvm {
                step: "IOAPIC pin",
                source: kvm_ioctls::Error::new(libc::EINVAL),
            })?;
        Ok(IrqLine::new(Arc::new(IoapicPin {
            ioapic: self.ioapic.clone(),
            pin,
        })))
    }

    /// The interrupt line of device interrupt `gsi` (an irqfd into the in-kernel GIC).
    #[cfg(target_arch = "aarch64")]
    pub fn irq_line(&self, gsi: u32) -> Result<IrqLine, VmError> {
        self.irqfd(gsi).map(IrqLine::eventfd)
    }

    /// aarch64: an ordinary one-vcpu VM with its GIC (see `with_type`).
    #[cfg(target_arch = "aarch64")]
    pub fn new() -> Result<Self, VmError> {
        Self::with_type(crate::arch::current::kvm::VmType::Ordinary, 1)
    }

    /// aarch64: opens /dev/kvm, creates a VM of type `want` and its GIC for `vcpus`
    /// vcpus, and says in one line on stderr which VM the room got and what the host
    /// offers (a protected VM that KVM refuses is an error, never a downgrade).
    #[cfg(target_arch = "aarch64")]
    pub fn with_type(
        want: crate::arch::current::kvm::VmType,
        vcpus: usize,
    ) -> Result<Self, VmError> {
        use crate::arch::current::kvm;
        let k = Kvm::new().map_err(step("cannot open /dev/kvm"))?;
        let (fd, support) = kvm::create_vm(&k, want).map_err(VmError::Arch)?;
        let gic = kvm::create_gic(&fd, vcpus).map_err(VmError::Arch)?;
        let offered = match support {
            kvm::ProtectedSupport::Offered => "offered".to_owned(),
            kvm::ProtectedSupport::Refused(errno) => format!(
                "refused by the host's KVM ({})",
                std::io::Error::from_raw_os_error(errno)
            ),
        };
        let got = match want {
            kvm::VmType::Ordinary => "ordinary",
            kvm::VmType::Protected => "protected",
        };
        // One write(2) for the whole line (console lines never tear).
        let line = format!(
            "anchor-vmm: aarch64 VM: {got} KVM VM, {}; protected VMs: {offered}\n",
            gic.version
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        Ok(Self {
            kvm: k,
            fd: Arc::new(fd),
            gic,
        })
    }

    /// Registers every region of `mem` as a KVM memory slot.
    pub fn register_memory(&self, mem: &GuestMemoryMmap<()>) -> Result<(), VmError> {
        crate::sys::register_guest_memory(&self.fd, mem).map_err(step("KVM_SET_USER_MEMORY_REGION"))
    }

    /// Whether KVM can signal an eventfd on a guest MMIO write (KVM_CAP_IOEVENTFD).
    pub fn has_ioeventfd(&self) -> bool {
        self.kvm.check_extension(kvm_ioctls::Cap::Ioeventfd)
    }

    /// Whether KVM has read-only memory slots (KVM_CAP_READONLY_MEM).
    pub fn has_readonly_mem(&self) -> bool {
        self.kvm.check_extension(kvm_ioctls::Cap::ReadonlyMem)
    }

    /// Maps `page` into the guest read-only at `gpa` as memory slot `slot` (see
    /// [`crate::sys::register_register_page`]).
    pub fn map_register_page(
        &self,
        slot: u32,
        gpa: u64,
        page: &Arc<crate::sys::RegisterPage>,
    ) -> Result<(), VmError> {
        crate::sys::register_register_page(&self.fd, slot, gpa, page)
            .map_err(step("KVM_SET_USER_MEMORY_REGION (register page)"))
    }

    /// A registrar for the virtio device `device` whose QueueNotify register is at `addr`:
    /// when fired (at the driver's first DRIVER_OK, on a vcpu thread), it makes KVM signal
    /// queue q's eventfd when the guest writes the 32-bit value q to `addr`, without
    /// leaving the kernel. Other widths and values still exit to the VMM. A queue KVM
    /// refuses is said once on stderr and keeps exiting (the transport signals the same
    /// eventfd).
    pub fn notify_registrar(&self, addr: u64, device: u64) -> NotifyRegistrar {
        let fd = self.fd.clone();
        Box::new(move |evts: &[EventFd]| {
            for (q, evt) in (0u32..).zip(evts) {
                if let Err(e) = fd.register_ioevent(evt, &kvm_ioctls::IoEventAddress::Mmio(addr), q)
                {
                    crate::log::say(format_args!(
                        "virtio device {device}: queue {q} notifications exit to the VMM: KVM_IOEVENTFD: {e}"
                    ));
                }
            }
        })
    }

    /// Creates an EventFd registered as an irqfd for `gsi`.
    pub fn irqfd(&self, gsi: u32) -> Result<EventFd, VmError> {
        let e = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| VmError::Kvm {
            step: "eventfd",
            source: kvm_ioctls::Error::new(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        // aarch64: KVM takes irqfds only once the GIC is initialised, which
        // needs every vcpu: the GIC registers them then (`Gic::init`).
        #[cfg(target_arch = "aarch64")]
        self.gic.defer_irqfd(&e, gsi).map_err(|e| VmError::Kvm {
            step: "eventfd",
            source: kvm_ioctls::Error::new(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        #[cfg(not(target_arch = "aarch64"))]
        self.fd.register_irqfd(&e, gsi).map_err(step("KVM_IRQFD"))?;
        Ok(e)
    }
}
