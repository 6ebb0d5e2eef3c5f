#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Namespace room benchmarks on this machine (tests/escape/tests/bench_ns.rs): start ->
# first command inside, for a room alone and beside another room of its image, vs
# bubblewrap with the same namespaces and image (pre-mounted; with a fresh loop mount;
# with the room's cgroup too: the like-for-like peer; with the cgroup and a loop mount
# beside a mounted copy), every contender once per round, 50 ms apart, so load falls on
# all alike; medians and ratios. The same rounds with each cgroup move right after a
# bystander's (the anchor host's favordynmods, approximated), and with favordynmods
# itself where unmounting undoes it (Linux < 6.18). Then reset, and memory of an idle
# room. Then the console round trip (tests/escape/tests/bench_console.rs): a command typed
# at the room's shell prompt -> its output, against the same shell under bwrap on a pty.
# Printed, never asserted. Needs root and the artefacts of `make images`.
#   BENCH_NS_RUNS=N   rounds (default 20); e.g. BENCH_NS_RUNS=50 tests/escape/bench.sh
#   BENCH_NS_FAVORDYNMODS=1   the favordynmods rounds on Linux >= 6.18 too (NOT undone:
#                     cgroup.procs writes stay per-process until reboot)
set -euo pipefail
cd "$(dirname "$(realpath "$0")")/../.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
export ANCHOR_CACHE ANCHOR_OUT
command -v bwrap >/dev/null || { echo "bench-ns: bwrap missing: run scripts/setup.sh" >&2; exit 1; }
for t in bench_ns bench_console; do
  cargo test --quiet -p anchor-escape --test "$t" -- --ignored --nocapture 2>&1 \
    | grep -E '^bench-ns:|panicked|FAILED'
done
