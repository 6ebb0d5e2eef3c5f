// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-vault: the vault helper bay0 spawns (docs/ARCHITECTURE.md, "The vault").
//! It owns everything that needs libtss2 and libcryptsetup, so bay0 never links them.

pub mod auditlog;
pub mod cli;
pub mod commands;
pub mod console;
pub mod error;
pub mod hex;
pub mod holders;
pub mod keys;
pub mod luks;
pub mod persist;
pub mod provision;
pub mod settings;
pub mod sys;
pub mod token;
pub mod tpm;
pub mod unlock;
