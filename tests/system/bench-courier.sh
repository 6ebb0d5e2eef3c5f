#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Courier benchmarks in the anchor host (tests/system/tests/bench_courier.rs): a large
# item (COURIER_BENCH_MIB, default 256) carried by the courier vs a raw copy over the same
# transport (room -> host -> room over hybrid vsock, anchor-courier-bench relay) in the same
# run, and approval -> file in place for a small item. Printed, never asserted. Needs the
# artefacts of `make initramfs` plus the static anchor-courier-bench.
set -euo pipefail
cd "$(dirname "$(realpath "$0")")/../.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${CARGO_TARGET_DIR:=$(scripts/cargo-target.sh)}"
export ANCHOR_CACHE ANCHOR_OUT
relay="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/anchor-courier-bench"
[[ -x "$relay" ]] || scripts/build-static.sh >/dev/null
export ANCHOR_ROOMS_INITRAMFS="$ANCHOR_CACHE/systest/initramfs-courier-bench.cpio.gz"
tests/system/mkinitramfs.sh --policies tests/system/policies \
  --extra "$relay:usr/bin/anchor-courier-bench" --out "$ANCHOR_ROOMS_INITRAMFS" >/dev/null
cargo test --quiet -p anchor-systest --test bench_courier -- --ignored --nocapture 2>&1 \
  | grep -E '^bench-courier:|panicked|FAILED'
