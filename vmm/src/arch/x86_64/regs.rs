// SPDX-License-Identifier: GPL-3.0-or-later
//! Initial vcpu register state: general registers, segments, control
//! registers, FPU, boot MSRs and the local APIC's LINT pins.

use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};

use super::boot::{EntryMode, KernelEntry};
use super::gdt;
use super::layout;

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// General registers at the kernel entry.
pub fn boot_regs(k: &KernelEntry) -> kvm_regs {
    let mut r = kvm_regs {
        rflags: 0x2,
        rip: k.entry,
        ..Default::default()
    };
    match k.mode {
        EntryMode::Linux64 => {
            r.rsp = layout::BOOT_STACK_POINTER;
            r.rbp = layout::BOOT_STACK_POINTER;
            r.rsi = layout::ZERO_PAGE_START;
        }
        EntryMode::Pvh => {
            r.rbx = layout::PVH_INFO_START;
        }
    }
    r
}

/// Segment and control registers at the kernel entry, starting from the
/// vcpu's current `sregs` (keeps the APIC base and friends KVM filled in).
pub fn boot_sregs(mode: EntryMode, mut s: kvm_sregs) -> kvm_sregs {
    let table = match mode {
        EntryMode::Linux64 => &gdt::GDT_LONG,
        EntryMode::Pvh => &gdt::GDT_PVH,
    };
    let code = gdt::segment(table[1], 1);
    let data = gdt::segment(table[2], 2);
    let tss = gdt::segment(table[3], 3);
    s.gdt.base = layout::BOOT_GDT_OFFSET;
    s.gdt.limit = (std::mem::size_of_val(table) - 1) as u16;
    s.idt.base = layout::BOOT_IDT_OFFSET;
    s.idt.limit = 7;
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = tss;
    match mode {
        EntryMode::Linux64 => {
            s.cr0 = X86_CR0_PE | X86_CR0_PG;
            s.cr3 = layout::PML4_START;
            s.cr4 = X86_CR4_PAE;
            s.efer = EFER_LME | EFER_LMA;
        }
        EntryMode::Pvh => {
            s.cr0 = X86_CR0_PE | X86_CR0_ET;
            s.cr3 = 0;
            s.cr4 = 0;
            s.efer = 0;
        }
    }
    s
}

/// FPU state as after FNINIT, with the default MXCSR.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MISC_ENABLE_FAST_STRING: u64 = 0x1;
const MTRR_ENABLE: u64 = 0x800;
const MTRR_MEM_TYPE_WB: u64 = 0x6;

/// The boot MSRs (same set Firecracker programs).
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    let e = |index: u32, data: u64| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    vec![
        e(MSR_IA32_SYSENTER_CS, 0),
        e(MSR_IA32_SYSENTER_ESP, 0),
        e(MSR_IA32_SYSENTER_EIP, 0),
        e(MSR_STAR, 0),
        e(MSR_CSTAR, 0),
        e(MSR_KERNEL_GS_BASE, 0),
        e(MSR_SYSCALL_MASK, 0),
        e(MSR_LSTAR, 0),
        e(MSR_IA32_TSC, 0),
        e(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        e(MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_MEM_TYPE_WB),
    ]
}

/// Builds the `Msrs` FAM wrapper for `boot_msrs`.
pub fn boot_msrs_fam() -> Result<Msrs, vmm_sys_util::fam::Error> {
    Msrs::from_entries(&boot_msrs())
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(l: &kvm_lapic_state, off: usize) -> u32 {
    let mut b = [0u8; 4];
    for (i, d) in b.iter_mut().enumerate() {
        *d = l.regs.get(off + i).map_or(0, |&c| c as u8);
    }
    u32::from_le_bytes(b)
}

fn set_lapic_reg(l: &mut kvm_lapic_state, off: usize, v: u32) {
    for (i, byte) in v.to_le_bytes().iter().enumerate() {
        if let Some(slot) = l.regs.get_mut(off + i) {
            *slot = *byte as _;
        }
    }
}

fn delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// LINT0 = ExtINT (the legacy PIC), LINT1 = NMI, as on a PC.
pub fn setup_lint(l: &mut kvm_lapic_state) {
    let lvt0 = lapic_reg(l, APIC_LVT0);
    set_lapic_reg(l, APIC_LVT0, delivery_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = lapic_reg(l, APIC_LVT1);
    set_lapic_reg(l, APIC_LVT1, delivery_mode(lvt1, APIC_MODE_NMI));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_modes() {
        let mut l = kvm_lapic_state::default();
        set_lapic_reg(&mut l, APIC_LVT0, 0x10000);
        setup_lint(&mut l);
        assert_eq!(lapic_reg(&l, APIC_LVT0), 0x10700);
        assert_eq!(lapic_reg(&l, APIC_LVT1), 0x400);
    }

    #[test]
    fn long_mode_sregs() {
        let s = boot_sregs(EntryMode::Linux64, kvm_sregs::default());
        assert_eq!(s.cr3, layout::PML4_START);
        assert_eq!(s.efer & 0x500, 0x500);
        assert_eq!(s.cs.l, 1);
        let p = boot_sregs(EntryMode::Pvh, kvm_sregs::default());
        assert_eq!(
            (p.cr0 & 1, p.cr0 & X86_CR0_PG, p.cs.db, p.cs.l),
            (1, 0, 1, 0)
        );
        assert_eq!(boot_msrs_fam().unwrap().as_slice().len(), 11);
    }
}
