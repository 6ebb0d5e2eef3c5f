// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's system calls come from `anchor-sys` (shared with its helpers): every `unsafe`
//! block of the host-side programs lives there, each with its reason.

pub use anchor_sys::*;
