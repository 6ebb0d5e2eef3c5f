#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Short fuzz smoke run of every anchor-vmm fuzz target (cargo +nightly fuzz): blk_queue
# (descriptor chains + block requests on a fuzzer-built virtqueue), vsock_packet (header
# parser), vsock_tx (packets through the vsock connection muxer). Exits non-zero if a
# target crashes, leaks or times out. Usage: vmm/fuzz/smoke.sh [SECONDS_PER_TARGET]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
secs="${1:-${FUZZ_SECONDS:-20}}"
cache="${ANCHOR_CACHE:-/var/cache/anchor-os}"
export CARGO_TARGET_DIR="${VMM_FUZZ_TARGET_DIR:-$cache/target-vmm-fuzz}"
work="$(mktemp -d)"
artifacts="$cache/vmm-fuzz-artifacts"
mkdir -p "$artifacts"
trap 'rm -rf "$work"' EXIT

cd "$here"
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
    echo "vmm fuzz smoke: needs cargo-fuzz and a nightly toolchain (scripts/setup.sh)" >&2
    exit 1
fi

# Build once (all targets), so the per-target time is fuzzing time.
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" cargo +nightly fuzz build >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    echo "vmm fuzz smoke: build FAILED" >&2
    exit 1
}

for target in $(cargo +nightly fuzz list); do
    # Fresh corpus per run, seeded from the checked-in seeds (never grown in the tree).
    mkdir -p "$work/$target"
    if [ -d "$here/seeds/$target" ]; then
        cp "$here/seeds/$target"/* "$work/$target/"
    fi
    echo "== vmm fuzz: $target, ${secs}s"
    log="$work/$target.log"
    if ! cargo +nightly fuzz run "$target" "$work/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$artifacts/$target-" >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "vmm fuzz smoke: $target FAILED (crash input kept in $artifacts/)" >&2
        exit 1
    fi
    # The figures: executions, their rate, peak RSS and final coverage.
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|^#[0-9]+ *DONE' "$log" || true
done
echo "vmm fuzz smoke: ok"
