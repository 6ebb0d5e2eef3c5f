// SPDX-License-Identifier: GPL-3.0-or-later
//! Thin wrappers over kvm-ioctls: the VM, its memory and its vcpus.

pub mod memory;
pub mod vcpu;
pub mod vm;
