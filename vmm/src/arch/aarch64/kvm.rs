// SPDX-License-Identifier: GPL-3.0-or-later
//! aarch64 KVM setup: the VM (ordinary or, where the host offers it, a pKVM
//! protected VM), the in-kernel GIC (v3, else v2) and the vcpus (the host's
//! preferred target, PSCI 0.2, secondaries powered off until PSCI CPU_ON,
//! the boot vcpu entering the Image with x0 = device tree).

use std::fmt;
use std::sync::Mutex;

use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2,
    kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3, kvm_regs, kvm_vcpu_init, user_pt_regs,
    KVM_ARM_VCPU_POWER_OFF, KVM_ARM_VCPU_PSCI_0_2, KVM_ARM_VCPU_PTRAUTH_ADDRESS,
    KVM_ARM_VCPU_PTRAUTH_GENERIC, KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR,
    KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, KVM_REG_ARM64, KVM_REG_ARM64_SYSREG,
    KVM_REG_ARM_CORE, KVM_REG_SIZE_U64, KVM_VGIC_V2_ADDR_TYPE_CPU, KVM_VGIC_V2_ADDR_TYPE_DIST,
    KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST,
};
use kvm_ioctls::{Cap, DeviceFd, Kvm, VcpuFd, VmFd};
use vmm_sys_util::eventfd::EventFd;

use super::fdt::GicVersion;
use super::layout;

/// The VM type bit of Android's pKVM interface for a protected VM (guest
/// memory unreachable from the host once the guest runs; crosvm asks for it
/// the same way). Mainline 6.1 knows no such type and refuses it (EINVAL).
pub const KVM_VM_TYPE_ARM_PROTECTED: u64 = 1 << 31;

pub use crate::config::VmType;

/// aarch64 KVM errors.
#[derive(Debug)]
pub enum KvmError {
    /// An ioctl failed: the step plus KVM's errno.
    Ioctl {
        /// The failing step.
        step: &'static str,
        /// KVM's error.
        source: kvm_ioctls::Error,
    },
    /// A protected VM was required and the host's KVM refused the type.
    ProtectedRefused(kvm_ioctls::Error),
    /// GICv2 cannot serve this many vcpus.
    TooManyVcpusForGicV2(usize),
}

impl fmt::Display for KvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ioctl { step, source } => write!(f, "{step}: {source}"),
            Self::ProtectedRefused(e) => write!(
                f,
                "a protected VM was required and this host's KVM refuses the pKVM protected VM type ({e}): \
                 its kernel has no protected-VM interface"
            ),
            Self::TooManyVcpusForGicV2(n) => write!(
                f,
                "the host offers only GICv2, which addresses at most {} vcpus, not {n}",
                layout::GIC_V2_MAX_VCPUS
            ),
        }
    }
}

impl std::error::Error for KvmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Ioctl { source, .. } | Self::ProtectedRefused(source) => Some(source),
            Self::TooManyVcpusForGicV2(_) => None,
        }
    }
}

fn step(step: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError::Ioctl { step, source }
}

/// What the host offers for protected VMs, found by asking KVM for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectedSupport {
    /// KVM created a protected VM.
    Offered,
    /// KVM refused the type (errno).
    Refused(i32),
}

/// Creates the VM of type `want`. For an ordinary VM, the host is also asked
/// for a protected one (created and closed at once) so the room's log line can
/// say what the host offers. A protected VM that KVM refuses is an error, never
/// a silent downgrade.
pub fn create_vm(kvm: &Kvm, want: VmType) -> Result<(VmFd, ProtectedSupport), KvmError> {
    let probe = kvm.create_vm_with_type(KVM_VM_TYPE_ARM_PROTECTED);
    let support = match &probe {
        Ok(_) => ProtectedSupport::Offered,
        Err(e) => ProtectedSupport::Refused(e.errno()),
    };
    match want {
        VmType::Protected => probe
            .map(|fd| (fd, support))
            .map_err(KvmError::ProtectedRefused),
        VmType::Ordinary => {
            drop(probe);
            let fd = kvm.create_vm().map_err(step("KVM_CREATE_VM"))?;
            Ok((fd, support))
        }
    }
}

/// The in-kernel interrupt controller.
#[derive(Debug)]
pub struct Gic {
    fd: DeviceFd,
    /// Its version.
    pub version: GicVersion,
    /// irqfds asked for before `init` (KVM refuses them until then: EAGAIN).
    pending: Mutex<Vec<(EventFd, u32)>>,
}

fn set_attr(fd: &DeviceFd, group: u32, attr: u64, addr: u64) -> Result<(), kvm_ioctls::Error> {
    let a = kvm_device_attr {
        flags: 0,
        group,
        attr,
        addr,
    };
    fd.set_device_attr(&a)
}

/// The userspace address KVM reads an attribute value from.
fn val_addr<T>(v: &T) -> u64 {
    std::ptr::from_ref(v) as u64
}

/// Creates the GIC (v3, else v2) at the layout's addresses with
/// `GIC_NR_IRQS` interrupts, for `vcpus` vcpus. Created before the vcpus so irqfds can be
/// registered early; `Gic::init` finishes it once every vcpu exists. A GICv2 refuses
/// more than 8 vcpus, said here: KVM itself would only fail the 9th KVM_CREATE_VCPU
/// with EINVAL.
pub fn create_gic(vm: &VmFd, vcpus: usize) -> Result<Gic, KvmError> {
    let mut dev = kvm_create_device {
        type_: kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
        fd: 0,
        flags: 0,
    };
    let (fd, version) = match vm.create_device(&mut dev) {
        Ok(fd) => (fd, GicVersion::V3),
        Err(_) => {
            dev.type_ = kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2;
            let fd = vm
                .create_device(&mut dev)
                .map_err(step("KVM_CREATE_DEVICE (GICv3, then GICv2)"))?;
            (fd, GicVersion::V2)
        }
    };
    if version == GicVersion::V2 && vcpus > version.max_vcpus() {
        return Err(KvmError::TooManyVcpusForGicV2(vcpus));
    }
    let grp = KVM_DEV_ARM_VGIC_GRP_ADDR;
    match version {
        GicVersion::V3 => {
            let dist = layout::GIC_DIST_ADDR;
            set_attr(&fd, grp, KVM_VGIC_V3_ADDR_TYPE_DIST.into(), val_addr(&dist))
                .map_err(step("GICv3 distributor address"))?;
            let redist = layout::GIC_REDIST_ADDR;
            set_attr(
                &fd,
                grp,
                KVM_VGIC_V3_ADDR_TYPE_REDIST.into(),
                val_addr(&redist),
            )
            .map_err(step("GICv3 redistributor address"))?;
        }
        GicVersion::V2 => {
            let dist = layout::GIC_DIST_ADDR;
            set_attr(&fd, grp, KVM_VGIC_V2_ADDR_TYPE_DIST.into(), val_addr(&dist))
                .map_err(step("GICv2 distributor address"))?;
            let cpu = layout::GIC_CPU_ADDR;
            set_attr(&fd, grp, KVM_VGIC_V2_ADDR_TYPE_CPU.into(), val_addr(&cpu))
                .map_err(step("GICv2 CPU interface address"))?;
        }
    }
    let nr: u32 = layout::GIC_NR_IRQS;
    set_attr(&fd, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, val_addr(&nr))
        .map_err(step("GIC number of interrupts"))?;
    Ok(Gic {
        fd,
        version,
        pending: Mutex::new(Vec::new()),
    })
}

impl Gic {
    /// Records that `evt` is to become the irqfd of `gsi` once the GIC is
    /// initialised (a duplicate of the fd is kept until then).
    pub fn defer_irqfd(&self, evt: &EventFd, gsi: u32) -> std::io::Result<()> {
        let dup = evt.try_clone()?;
        match self.pending.lock() {
            Ok(mut p) => {
                p.push((dup, gsi));
                Ok(())
            }
            Err(_) => Err(std::io::Error::other("irqfd list poisoned")),
        }
    }

    /// Initialises the GIC once all `vcpus` exist (before the first KVM_RUN),
    /// then registers the deferred irqfds with `vm`.
    pub fn init(&self, vm: &VmFd, vcpus: usize) -> Result<(), KvmError> {
        if self.version == GicVersion::V2 && vcpus > self.version.max_vcpus() {
            return Err(KvmError::TooManyVcpusForGicV2(vcpus));
        }
        set_attr(
            &self.fd,
            KVM_DEV_ARM_VGIC_GRP_CTRL,
            KVM_DEV_ARM_VGIC_CTRL_INIT.into(),
            0,
        )
        .map_err(step("GIC init (KVM_DEV_ARM_VGIC_CTRL_INIT)"))?;
        let pending = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => Vec::new(),
        };
        for (evt, gsi) in &pending {
            vm.register_irqfd(evt, *gsi).map_err(step("KVM_IRQFD"))?;
        }
        Ok(())
    }
}

/// KVM_{GET,SET}_ONE_REG id of a 64-bit core register at byte `offset` of `kvm_regs`.
fn core_reg(offset: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | u64::from(KVM_REG_ARM_CORE) | (offset / 4) as u64
}

/// Id of a 64-bit system register.
const fn sys_reg(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    KVM_REG_ARM64
        | KVM_REG_SIZE_U64
        | KVM_REG_ARM64_SYSREG as u64
        | (op0 << 14)
        | (op1 << 11)
        | (crn << 7)
        | (crm << 3)
        | op2
}

/// MPIDR_EL1.
const MPIDR_EL1: u64 = sys_reg(3, 0, 0, 0, 5);
/// EL1h with D, A, I, F masked: the state the Image protocol requires.
const PSTATE_EL1H_MASKED: u64 = 0x3c5;

/// Initialises vcpu `id` (the host's preferred target, PSCI 0.2, pointer
/// authentication when KVM offers both halves; every vcpu but 0 starts
/// powered off) and, for vcpu 0, the boot registers: pc = `entry`,
/// x0 = `fdt`, EL1h with interrupts masked.
pub fn init_vcpu(
    kvm: &Kvm,
    vm: &VmFd,
    fd: &VcpuFd,
    id: u8,
    entry: u64,
    fdt: u64,
) -> Result<(), KvmError> {
    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi)
        .map_err(step("KVM_ARM_PREFERRED_TARGET"))?;
    let mut features = 1u32 << KVM_ARM_VCPU_PSCI_0_2;
    if id > 0 {
        features |= 1 << KVM_ARM_VCPU_POWER_OFF;
    }
    if kvm.check_extension(Cap::ArmPtrAuthAddress) && kvm.check_extension(Cap::ArmPtrAuthGeneric) {
        features |= (1 << KVM_ARM_VCPU_PTRAUTH_ADDRESS) | (1 << KVM_ARM_VCPU_PTRAUTH_GENERIC);
    }
    if let Some(f0) = kvi.features.first_mut() {
        *f0 |= features;
    }
    fd.vcpu_init(&kvi).map_err(step("KVM_ARM_VCPU_INIT"))?;
    if id == 0 {
        let regs = std::mem::offset_of!(kvm_regs, regs);
        let set = |off: usize, v: u64, what: &'static str| {
            fd.set_one_reg(core_reg(regs + off), &v.to_le_bytes())
                .map(drop)
                .map_err(step(what))
        };
        set(
            std::mem::offset_of!(user_pt_regs, pstate),
            PSTATE_EL1H_MASKED,
            "KVM_SET_ONE_REG pstate",
        )?;
        set(
            std::mem::offset_of!(user_pt_regs, pc),
            entry,
            "KVM_SET_ONE_REG pc",
        )?;
        set(
            std::mem::offset_of!(user_pt_regs, regs),
            fdt,
            "KVM_SET_ONE_REG x0",
        )?;
    }
    Ok(())
}

/// The vcpu's MPIDR_EL1 (how the device tree names it).
pub fn mpidr(fd: &VcpuFd) -> Result<u64, KvmError> {
    let mut b = [0u8; 8];
    fd.get_one_reg(MPIDR_EL1, &mut b)
        .map_err(step("KVM_GET_ONE_REG MPIDR_EL1"))?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_ids_match_the_kernel_abi() {
        // arch/arm64/include/uapi/asm/kvm.h: KVM_REG_ARM_CORE_REG(regs.pc) etc.
        assert_eq!(
            core_reg(std::mem::offset_of!(user_pt_regs, pc)),
            0x6030_0000_0010_0040
        );
        assert_eq!(core_reg(0), 0x6030_0000_0010_0000);
        assert_eq!(MPIDR_EL1, 0x6030_0000_0013_c005);
    }
}
