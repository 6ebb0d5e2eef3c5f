// SPDX-License-Identifier: GPL-3.0-or-later
//! anchorctl, the Anchor OS operator CLI. `main.rs` only parses arguments and exits.

pub mod cli;
pub mod policy_cmd;
pub mod room_cmd;
pub mod sys;
pub mod update_cmd;
