#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The cost of one `anchor-vault audit anchor` by log length (swtpm), and of its check of
# the log (whole, as before; from the end, as now). Figures only, never asserted.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test -q --release -p anchor-vault --test anchor_bench -- --ignored --nocapture \
  --test-threads 1 2>&1 | grep -oE 'audit (anchor|check),.*'
