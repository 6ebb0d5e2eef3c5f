// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-net: the anchor host's side of a room's network, shared by anchor-vmm's
//! virtio-net device (microVM rooms) and anchor-jail's relay (namespace rooms), so that
//! both judge a room's frames by the very same rule (docs/ARCHITECTURE.md, "Network"):
//!
//! - [`egress`]: which frames may leave a room for its user-mode stack (passt): IPv4 and
//!   ARP only, never the anchor host itself;
//! - [`host`]: the anchor host's own addresses and networks, followed through a
//!   NETLINK_ROUTE socket while the room runs;
//! - [`stream`]: the length-prefixed framing passt speaks on its socket.

pub mod egress;
pub mod host;
pub mod stream;
mod sys;
