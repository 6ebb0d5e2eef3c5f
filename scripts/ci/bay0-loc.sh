#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Gate: bay0 has at most 3000 lines of non-test Rust (spec: bay0 constraints).
# Counted: non-blank, non-comment lines of bay0/src/**/*.rs outside items marked
# #[cfg(test)] (the item's braces are followed to its end).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
LIMIT=3000
mapfile -t files < <(find bay0/src -name '*.rs' | sort)
((${#files[@]})) || fail "no Rust files under bay0/src"
loc=$(awk '
  FNR == 1 { skipping = 0; depth = 0; started = 0; in_block = 0 }
  {
    line = $0
    if (in_block) { if (line ~ /\*\//) in_block = 0; next }
    if (line ~ /^[[:space:]]*\/\*/) { if (line !~ /\*\//) in_block = 1; next }
    if (line ~ /^[[:space:]]*#\[cfg\(test\)\]/) { skipping = 1; depth = 0; started = 0; next }
    if (skipping) {
      tmp = line; o = gsub(/\{/, "", tmp); tmp = line; c = gsub(/\}/, "", tmp)
      depth += o - c
      if (o > 0) started = 1
      if ((started && depth <= 0) || (!started && line ~ /;[[:space:]]*$/)) skipping = 0
      next
    }
    if (line ~ /^[[:space:]]*$/) next
    if (line ~ /^[[:space:]]*\/\//) next
    n++
  }
  END { print n + 0 }' "${files[@]}")
per_file=$(for f in "${files[@]}"; do printf '%s ' "$(basename "$f")"; done)
if ((loc > LIMIT)); then
  fail "bay0 has $loc non-test lines (limit $LIMIT) in ${#files[@]} files"
fi
pass "bay0 non-test LOC: $loc / $LIMIT (${#files[@]} files: $per_file)"
