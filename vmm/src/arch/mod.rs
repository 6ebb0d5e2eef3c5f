// SPDX-License-Identifier: GPL-3.0-or-later
//! Architecture-specific boot code. `current` is the host architecture's
//! module: x86_64 boots guests; aarch64 has its memory layout only and every
//! boot step fails with `aarch64::UNSUPPORTED` until aarch64 booting lands.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64 as current;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use self::aarch64 as current;
