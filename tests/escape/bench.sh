#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Namespace room benchmarks on this machine (tests/escape/tests/bench_ns.rs): start ->
# first command inside vs bubblewrap with the same namespaces and image, reset, memory of
# an idle room. Printed, never asserted. Needs root and the artefacts of `make images`.
set -euo pipefail
cd "$(dirname "$(realpath "$0")")/../.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
export ANCHOR_CACHE ANCHOR_OUT
command -v bwrap >/dev/null || { echo "bench-ns: bwrap missing: run scripts/setup.sh" >&2; exit 1; }
cargo test --quiet -p anchor-escape --test bench_ns -- --ignored --nocapture 2>&1 \
  | grep -E '^bench-ns:|panicked|FAILED'
