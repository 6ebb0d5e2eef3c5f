// SPDX-License-Identifier: GPL-3.0-or-later
//! Anchor OS A/B updates (docs/SIGNING.md): the two ESP slots with systemd-boot boot
//! counting, `apply` (verify, then write the inactive slot and arm it), `bless` (keep a slot
//! that booted healthy), `status`; and the build-time side of measured boot (PCR 11
//! prediction and the signed policy). Used by the `anchor-update` helper that bay0 spawns,
//! by `anchorctl update`, and by `anchor-uki` in uki/build.sh.

pub mod apply;
pub mod bless;
pub mod commands;
pub mod device;
pub mod efivars;
pub mod esp;
pub mod gpt;
pub mod osrel;
pub mod pcr;
pub mod pe;
pub mod slots;
pub mod status;
pub mod sys;
pub mod verify;
pub mod version;
