// SPDX-License-Identifier: GPL-3.0-or-later
//! x86_64 boot: memory layout, e820, GDT, page tables, boot protocols, CPUID, MSRs; and
//! the userspace IOAPIC of the split irqchip.

pub mod boot;
pub mod cpuid;
pub mod gdt;
pub mod ioapic;
pub mod layout;
pub mod mptable;
pub mod regs;
