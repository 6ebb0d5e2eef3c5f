#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# One short fuzz run of one cargo-fuzz target, shared by the crates' fuzz/smoke.sh.
# Usage: scripts/fuzz-target.sh LABEL FUZZ_DIR TARGET SECONDS ARTIFACTS_DIR [LIBFUZZER_FLAG...]
#   LABEL          names the run in messages ("policy fuzz", "vmm fuzz")
#   FUZZ_DIR       the crate's fuzz/ directory (seeds in FUZZ_DIR/seeds/TARGET/)
#   ARTIFACTS_DIR  where libFuzzer keeps a crashing input (TARGET-crash-...)
#   LIBFUZZER_FLAG extra libFuzzer flags, e.g. -max_len=8192
# The caller sets CARGO_TARGET_DIR. The corpus is fresh per run, seeded from the
# checked-in seeds (never grown in the tree). Prints the run's figures; exits non-zero
# if the target crashes, leaks or times out.
set -euo pipefail

if [ "$#" -lt 5 ]; then
    echo "usage: $0 LABEL FUZZ_DIR TARGET SECONDS ARTIFACTS_DIR [LIBFUZZER_FLAG...]" >&2
    exit 2
fi
label="$1"
fuzz_dir="$2"
target="$3"
secs="$4"
artifacts="$5"
shift 5

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts" "$work/corpus"
if [ -d "$fuzz_dir/seeds/$target" ]; then
    cp "$fuzz_dir/seeds/$target"/* "$work/corpus/"
fi

cd "$fuzz_dir"
echo "== $label: $target, ${secs}s"
log="$work/$target.log"
if ! cargo +nightly fuzz run "$target" "$work/corpus" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 "$@" \
    -print_final_stats=1 -artifact_prefix="$artifacts/$target-" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "$label smoke: $target FAILED (crash input kept in $artifacts/)" >&2
    exit 1
fi
# The figures: executions, their rate, peak RSS and final coverage.
grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|^#[0-9]+[[:space:]]*DONE' "$log" || true
