// SPDX-License-Identifier: GPL-3.0-or-later
//! Anchor OS wire formats, shared by both ends of each channel and by nothing else:
//!
//! - [`control`]: bay0's control socket (`/run/anchor/control.sock`), spoken by anchorctl.
//! - [`umbilical`]: the channel between bay0 and a room's agent (over the room's vsock).
//! - [`courier`]: what the courier's requests, answers and data connections carry.
//! - [`exit`]: what the exit status of bay0's helpers (jail and VMM, vault) means.
//! - [`volume`]: how the jail and the agent judge a room volume's first bytes.
//!
//! No dependencies, no allocation on the decoding side (bay0 decodes into fixed buffers),
//! and a hard limit on every field. docs/CONTROL-PROTOCOL.md and docs/COURIER-PROTOCOL.md
//! describe the formats in prose.

pub mod control;
pub mod courier;
pub mod exit;
pub mod name;
pub mod umbilical;
pub mod volume;
