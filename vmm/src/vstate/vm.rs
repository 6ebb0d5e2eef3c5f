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
    /// This host architecture cannot run guests yet.
    #[cfg(not(target_arch = "x86_64"))]
    Unsupported(&'static str),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kvm { step, source } => write!(f, "{step}: {source}"),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Unsupported(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for VmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Kvm { source, .. } => Some(source),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Unsupported(_) => None,
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

    /// aarch64 needs a GIC (created after the vcpus) and vcpu init, neither
    /// written yet: fail before /dev/kvm is opened, with one clear reason.
    #[cfg(target_arch = "aarch64")]
    pub fn new() -> Result<Self, VmError> {
        Err(VmError::Unsupported(crate::arch::current::UNSUPPORTED))
    }

    /// Registers every region of `mem` as a KVM memory slot.
    pub fn register_memory(&self, mem: &GuestMemoryMmap<()>) -> Result<(), VmError> {
        crate::sys::register_guest_memory(&self.fd, mem).map_err(step("KVM_SET_USER_MEMORY_REGION"))
    }

    /// Whether KVM can signal an eventfd on a guest MMIO write (KVM_CAP_IOEVENTFD).
    pub fn has_ioeventfd(&self) -> bool {
        self.kvm.check_extension(kvm_ioctls::Cap::Ioeventfd)
    }

    /// Makes KVM signal `evt` when the guest writes the 32-bit value `value` to the MMIO
    /// address `addr`, without leaving the kernel (a virtio QueueNotify register, `value`
    /// = the queue index). Other widths and values still exit to the VMM.
    pub fn register_notify(&self, evt: &EventFd, addr: u64, value: u32) -> Result<(), VmError> {
        self.fd
            .register_ioevent(evt, &kvm_ioctls::IoEventAddress::Mmio(addr), value)
            .map_err(step("KVM_IOEVENTFD"))
    }

    /// Creates an EventFd registered as an irqfd for `gsi`.
    pub fn irqfd(&self, gsi: u32) -> Result<EventFd, VmError> {
        let e = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| VmError::Kvm {
            step: "eventfd",
            source: kvm_ioctls::Error::new(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        self.fd.register_irqfd(&e, gsi).map_err(step("KVM_IRQFD"))?;
        Ok(e)
    }
}
