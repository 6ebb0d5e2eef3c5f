// SPDX-License-Identifier: GPL-3.0-or-later
//! aarch64: the guest memory layout, the Linux arm64 Image loader, the device
//! tree, the MMIO front of the UART and what a failed KVM_RUN means build on
//! every host (so their unit tests run in the x86_64 CI); the KVM parts (VM
//! type, GIC, vcpu init) and the final boot step exist on aarch64 hosts only.

pub mod boot;
pub mod fdt;
pub mod image;
#[cfg(target_arch = "aarch64")]
pub mod kvm;
pub mod layout;
pub mod run;
pub mod serial;
