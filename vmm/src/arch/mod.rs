// SPDX-License-Identifier: GPL-3.0-or-later
//! Architecture-specific boot code. `current` is the host architecture's
//! module. The aarch64 module's host-independent parts (layout, Image loader,
//! device tree) are built on x86_64 too, where their unit tests run.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64 as current;

pub mod aarch64;
pub mod mapped;
#[cfg(target_arch = "aarch64")]
pub use self::aarch64 as current;
