#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Room benchmarks in the anchor host (tests/system/tests/bench_rooms.rs): start, three at
# once, reset, bay0 RSS, jail setup cost. Printed, never asserted. Needs the artefacts of
# `make initramfs` (run-all.sh builds the rooms initramfs).
set -euo pipefail
cd "$(dirname "$(realpath "$0")")/../.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
export ANCHOR_CACHE ANCHOR_OUT
export ANCHOR_ROOMS_INITRAMFS="$ANCHOR_CACHE/systest/initramfs-rooms.cpio.gz"
tests/system/mkinitramfs.sh --policies tests/system/policies --out "$ANCHOR_ROOMS_INITRAMFS" >/dev/null
# One vCPU as in `make run`, then two.
for cpus in 1 2; do
  ANCHOR_BENCH_CPUS=$cpus cargo test --quiet -p anchor-systest --test bench_rooms -- --ignored --nocapture 2>&1 \
    | grep -E '^bench-rooms:|panicked|FAILED'
done
