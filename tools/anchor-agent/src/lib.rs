// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-agent: the PID 1 of an Anchor OS room (a microVM).
//!
//! It mounts the kernel filesystems and tmpfs over every writable path (a room
//! forgets everything when it stops), reads its settings from the kernel command
//! line (`anchor.room=NAME` and friends, see [`cmdline`]), prints
//! `anchor-agent: room NAME ready` on the console, runs a shell on the console with
//! job control, reaps orphans, and resets the VM when the shell exits.

pub mod cmdline;
pub mod console;
pub mod courier;
pub mod echo;
pub mod error;
pub mod init;
pub mod net;
pub mod sys;
pub mod umbilical;
pub mod volume;
