// SPDX-License-Identifier: GPL-3.0-or-later
//! Emulated devices: the MMIO bus, legacy port devices and virtio.

pub mod boot_timer;
pub mod bus;
pub mod i8042;
pub mod irq;
pub mod serial;
pub mod serial_flush;
pub mod serial_input;
pub mod virtio;
