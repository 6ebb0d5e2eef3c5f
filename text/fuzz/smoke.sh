#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Short fuzz smoke run of every anchor-text fuzz target (cargo +nightly fuzz). Exits
# non-zero if a target crashes, leaks or times out. Usage: text/fuzz/smoke.sh [SECONDS]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
run_target="$here/../../scripts/fuzz-target.sh"
secs="${1:-${FUZZ_SECONDS:-20}}"
cache="${ANCHOR_CACHE:-/var/cache/anchor-os}"
export CARGO_TARGET_DIR="${TEXT_FUZZ_TARGET_DIR:-$cache/target-text-fuzz}"
artifacts="$cache/text-fuzz-artifacts"

cd "$here"
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
    echo "text fuzz smoke: needs cargo-fuzz and a nightly toolchain (scripts/setup.sh)" >&2
    exit 1
fi

for target in $(cargo +nightly fuzz list); do
    "$run_target" "text fuzz" "$here" "$target" "$secs" "$artifacts" -max_len=8192
done
echo "text fuzz smoke: ok"
