#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Short fuzz runs of every guest- or user-facing parser (cargo +nightly fuzz).
# Each crate with a fuzz/ directory ships fuzz/smoke.sh, which fails on a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || { echo "fuzz-smoke: cargo-fuzz missing (run scripts/setup.sh)" >&2; exit 1; }
rustup toolchain list | grep -q '^nightly' || { echo "fuzz-smoke: the nightly toolchain is missing" >&2; exit 1; }
# Fuzz builds go to their own cache dir (nightly + sanitizer flags never share artefacts).
export CARGO_TARGET_DIR="$(scripts/cargo-target.sh fuzz)"
found=0
for s in */fuzz/smoke.sh; do
  [[ -f "$s" ]] || continue
  found=$((found + 1))
  echo "fuzz-smoke: $s"
  bash "$s"
done
((found)) || { echo "fuzz-smoke: no fuzz/smoke.sh found" >&2; exit 1; }
echo "fuzz-smoke: $found crate(s) fuzzed without a crash"
