#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Short fuzz smoke run of every policy fuzz target (cargo +nightly fuzz). Exits non-zero
# if a target crashes, leaks or times out. Usage: policy/fuzz/smoke.sh [SECONDS_PER_TARGET]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
secs="${1:-${FUZZ_SECONDS:-20}}"
cache="${ANCHOR_CACHE:-/var/cache/anchor-os}"
export CARGO_TARGET_DIR="${POLICY_FUZZ_TARGET_DIR:-$cache/target-policy-fuzz}"
work="$(mktemp -d)"
artifacts="$cache/policy-fuzz-artifacts"
mkdir -p "$artifacts"
trap 'rm -rf "$work"' EXIT

cd "$here"
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
    echo "policy fuzz smoke: needs cargo-fuzz and a nightly toolchain (scripts/setup.sh)" >&2
    exit 1
fi

for target in $(cargo +nightly fuzz list); do
    # Fresh corpus per run, seeded from the checked-in seeds (never grown in the tree).
    mkdir -p "$work/$target"
    if [ -d "$here/seeds/$target" ]; then
        cp "$here/seeds/$target"/* "$work/$target/"
    fi
    echo "== policy fuzz: $target, ${secs}s"
    log="$work/$target.log"
    if ! cargo +nightly fuzz run "$target" "$work/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=70000 \
        -print_final_stats=1 -artifact_prefix="$artifacts/$target-" >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "policy fuzz smoke: $target FAILED (crash input kept in $artifacts/)" >&2
        exit 1
    fi
    # The figures: executions, their rate, time and coverage.
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|^#[0-9]+ *DONE' "$log" || true
done
echo "policy fuzz smoke: ok"
