// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0, the Anchor OS PID 1 supervisor. One module per concern; `main.rs` wires them.

pub mod logger;

pub mod cli;
pub mod config;
pub mod console;
pub mod control;
pub mod courier;
pub mod error;
pub mod event;
pub mod hosted;
pub mod init;
pub mod input;
pub mod policy;
pub mod room;
pub mod rooms;
pub mod shutdown;
pub mod supervisor;
pub mod sys;
pub mod update;
pub mod vault;
pub mod watchdog;
