#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Prints a cargo target directory of this checkout's own, under the shared cache:
#   $ANCHOR_CACHE/targets/<checkout's name>-<hash of its path>/<KIND>   (KIND default: main)
# KIND names a build that must not share artefacts with the main one (other RUSTFLAGS or
# features, nightly fuzz builds): fuzz, vmm-fuzz, debug-stall, ...
#
# Why one per checkout: cargo names a workspace crate's artefacts by its place inside the
# workspace, not by the checkout's path, and takes them as fresh when they are newer than
# the sources' mtimes. Two clones sharing one target directory would share those
# artefacts: in a clone whose files are older than the other's last build, cargo builds
# nothing and runs the other clone's binaries, with its code and its paths (every
# env!("CARGO_MANIFEST_DIR") in them names the other clone).
set -euo pipefail
[[ "$#" -le 1 && "${1:-main}" =~ ^[a-z0-9][a-z0-9-]*$ ]] || { echo "usage: $0 [KIND] (KIND: lower-case letters, digits, -)" >&2; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
key="$(printf '%s' "$root" | sha256sum | cut -c1-12)"
printf '%s/targets/%s-%s/%s\n' "${ANCHOR_CACHE:-/var/cache/anchor-os}" "$(basename "$root")" "$key" "${1:-main}"
