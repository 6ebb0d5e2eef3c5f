// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-vmm: the embedded microVM monitor of Anchor OS.
//!
//! `config` parses and validates, `builder` builds the VM, `runner` runs it;
//! `arch`, `vstate` and `devices` hold the pieces.

pub mod arch;
pub mod builder;
pub mod config;
pub mod devices;
pub mod exit;
pub mod log;
pub mod runner;
pub mod seccomp;
pub mod stats;
pub mod sys;
pub mod vstate;
