// SPDX-License-Identifier: GPL-3.0-or-later
//! aarch64: the guest memory layout and the boot entry points the builder
//! calls. Booting (arm64 Image loader, FDT, GIC, vcpu registers) is not
//! written yet: every entry point returns an error carrying [`UNSUPPORTED`],
//! so the VMM stops with exit code 3 before it touches KVM.

pub mod boot;
pub mod layout;

/// The one-line reason every aarch64 boot step fails with today.
pub const UNSUPPORTED: &str = "booting guests on aarch64 is not implemented yet";
