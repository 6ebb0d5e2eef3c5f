#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# A short fuzz smoke run of every cargo-fuzz target of one crate, one after another
# (scripts/fuzz-target.sh each), for the crates' fuzz/smoke.sh. Exits non-zero if a
# target crashes, leaks or times out.
# Usage: scripts/fuzz-crate.sh NAME FUZZ_DIR MAX_LEN [SECONDS_PER_TARGET]
#   NAME      the crate's short name: messages ("NAME fuzz"), the build cache
#             (`scripts/cargo-target.sh NAME-fuzz`, or $NAME_FUZZ_TARGET_DIR) and where a
#             crashing input is kept ($ANCHOR_CACHE/NAME-fuzz-artifacts)
#   MAX_LEN   libFuzzer's -max_len for the crate's inputs
#   SECONDS_PER_TARGET defaults to $FUZZ_SECONDS, else 20
set -euo pipefail
[ "$#" -ge 3 ] || { echo "usage: $0 NAME FUZZ_DIR MAX_LEN [SECONDS_PER_TARGET]" >&2; exit 2; }
name="$1"
here="$(cd "$2" && pwd)"
max_len="$3"
secs="${4:-${FUZZ_SECONDS:-20}}"
run_target="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fuzz-target.sh"
cache="${ANCHOR_CACHE:-/var/cache/anchor-os}"
dir_var="$(printf '%s' "$name" | tr '[:lower:]-' '[:upper:]_')_FUZZ_TARGET_DIR"
export CARGO_TARGET_DIR="${!dir_var:-$("$(dirname "$run_target")/cargo-target.sh" "$name-fuzz")}"
artifacts="$cache/$name-fuzz-artifacts"

cd "$here"
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
    echo "$name fuzz smoke: needs cargo-fuzz and a nightly toolchain (scripts/setup.sh)" >&2
    exit 1
fi
for target in $(cargo +nightly fuzz list); do
    "$run_target" "$name fuzz" "$here" "$target" "$secs" "$artifacts" -max_len="$max_len"
done
echo "$name fuzz smoke: ok"
