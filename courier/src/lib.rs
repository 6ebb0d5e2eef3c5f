// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-courier: the one-shot process that carries one approved file between two rooms
//! (docs/COURIER-PROTOCOL.md). bay0 starts it after the user said yes on bay0's own
//! prompt, with the two connections as its stdin (the source room's agent) and stdout
//! (the destination room's agent); it confines itself ([`confine`]), runs one
//! [`transfer`], prints one result line on stderr and exits. It never outlives the
//! transfer and holds nothing else.

pub mod confine;
pub mod sys;
pub mod transfer;
