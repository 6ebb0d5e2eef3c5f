#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Short fuzz smoke run of every audit-log fuzz target (cargo +nightly fuzz). Exits non-zero
# if a target crashes, leaks or times out. Usage: audit/fuzz/smoke.sh [SECONDS_PER_TARGET]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
run_target="$here/../../scripts/fuzz-target.sh"
secs="${1:-${FUZZ_SECONDS:-20}}"
cache="${ANCHOR_CACHE:-/var/cache/anchor-os}"
export CARGO_TARGET_DIR="${AUDIT_FUZZ_TARGET_DIR:-$cache/target-audit-fuzz}"
artifacts="$cache/audit-fuzz-artifacts"

cd "$here"
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
    echo "audit fuzz smoke: needs cargo-fuzz and a nightly toolchain (scripts/setup.sh)" >&2
    exit 1
fi

for target in $(cargo +nightly fuzz list); do
    "$run_target" "audit fuzz" "$here" "$target" "$secs" "$artifacts" -max_len=20000
done
echo "audit fuzz smoke: ok"
