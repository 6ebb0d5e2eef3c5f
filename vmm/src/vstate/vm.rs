// SPDX-License-Identifier: GPL-3.0-or-later
//! The KVM VM: memory slots, in-kernel irqchip and PIT, TSS, irqfds.

use std::fmt;

#[cfg(target_arch = "x86_64")]
use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

#[cfg(target_arch = "x86_64")]
use crate::arch::current::layout;

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
    /// The VM fd.
    pub fd: VmFd,
    /// aarch64: the in-kernel GIC (initialised once the vcpus exist).
    #[cfg(target_arch = "aarch64")]
    pub gic: crate::arch::current::kvm::Gic,
}

impl Vm {
    /// Opens /dev/kvm, creates the VM with irqchip, PIT and TSS. Guest memory
    /// is registered separately (`register_memory`), so the caller can overlap
    /// that slow ioctl (~6 ms on this host, independent of size) with other setup.
    #[cfg(target_arch = "x86_64")]
    pub fn new() -> Result<Self, VmError> {
        let kvm = Kvm::new().map_err(step("cannot open /dev/kvm"))?;
        let fd = kvm.create_vm().map_err(step("KVM_CREATE_VM"))?;
        fd.set_tss_address(layout::KVM_TSS_ADDRESS as usize)
            .map_err(step("KVM_SET_TSS_ADDR"))?;
        fd.set_identity_map_address(layout::KVM_IDENTITY_MAP_ADDRESS)
            .map_err(step("KVM_SET_IDENTITY_MAP_ADDR"))?;
        fd.create_irq_chip().map_err(step("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(step("KVM_CREATE_PIT2"))?;
        Ok(Self { kvm, fd })
    }

    /// aarch64: an ordinary VM with its GIC (see `with_type`).
    #[cfg(target_arch = "aarch64")]
    pub fn new() -> Result<Self, VmError> {
        Self::with_type(crate::arch::current::kvm::VmType::Ordinary)
    }

    /// aarch64: opens /dev/kvm, creates a VM of type `want` and its GIC, and
    /// says in one line on stderr which VM the room got and what the host
    /// offers (a protected VM that KVM refuses is an error, never a downgrade).
    #[cfg(target_arch = "aarch64")]
    pub fn with_type(want: crate::arch::current::kvm::VmType) -> Result<Self, VmError> {
        use crate::arch::current::kvm;
        let k = Kvm::new().map_err(step("cannot open /dev/kvm"))?;
        let (fd, support) = kvm::create_vm(&k, want).map_err(VmError::Arch)?;
        let gic = kvm::create_gic(&fd).map_err(VmError::Arch)?;
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
        Ok(Self { kvm: k, fd, gic })
    }

    /// Registers every region of `mem` as a KVM memory slot.
    pub fn register_memory(&self, mem: &GuestMemoryMmap<()>) -> Result<(), VmError> {
        crate::sys::register_guest_memory(&self.fd, mem).map_err(step("KVM_SET_USER_MEMORY_REGION"))
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
