// SPDX-License-Identifier: GPL-3.0-or-later
//! Emulated devices: the MMIO bus, legacy port devices and virtio.

pub mod bus;
pub mod virtio;
