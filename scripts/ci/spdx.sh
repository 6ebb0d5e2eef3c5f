#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Gate: every Rust source file carries the SPDX licence line in its first 3 lines.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mapfile -t files < <(git ls-files -co --exclude-standard -- '*.rs' | sort)
((${#files[@]})) || fail "no .rs files found"
missing=()
for f in "${files[@]}"; do
  [[ -f "$f" ]] || continue
  head -n 3 "$f" | grep -q 'SPDX-License-Identifier: GPL-3.0-or-later' || missing+=("$f")
done
((${#missing[@]} == 0)) || fail "${#missing[@]} file(s) without SPDX header: ${missing[*]}"
pass "${#files[@]} .rs files carry SPDX-License-Identifier: GPL-3.0-or-later"
