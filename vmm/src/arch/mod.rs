// SPDX-License-Identifier: GPL-3.0-or-later
//! Architecture-specific boot code. Only x86_64 exists today; aarch64 comes next.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64 as current;
