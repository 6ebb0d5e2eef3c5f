#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Benchmarks: printed figures and ratios against peers measured in the same run.
# Never asserted. Each area owns its bench script.
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
for b in bay0/bench.sh policy/bench.sh tools/anchor-vault/bench.sh bpf/bench.sh vmm/bench.sh tests/system/bench-nested.sh tests/system/bench-rooms.sh tests/system/bench-courier.sh tests/system/bench-arm64.sh tests/escape/bench.sh images/bench.sh; do
  [[ -x "$b" ]] || continue
  echo "=== $b"
  "$b" || { echo "bench: $b failed" >&2; rc=1; }
done
exit $rc
