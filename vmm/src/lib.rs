// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-vmm: the embedded microVM monitor of Anchor OS.

pub mod devices;
