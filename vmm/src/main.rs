// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-vmm command line (placeholder until the CLI lands).

fn main() {}
