#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Gate: bay0 has at most 6 direct (normal + build) dependencies, from cargo metadata.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
LIMIT=6
meta=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null || cargo metadata --format-version 1 --no-deps)
deps=$(jq -r '.packages[] | select(.name == "bay0") | .dependencies[]
              | select(.kind == null or .kind == "build") | .name' <<<"$meta" | sort -u)
[[ -n "$(jq -r '.packages[] | select(.name == "bay0") | .name' <<<"$meta")" ]] || fail "package bay0 not found"
count=$(grep -c . <<<"$deps" || true)
list=$(tr '\n' ' ' <<<"$deps")
((count <= LIMIT)) || fail "bay0 has $count direct dependencies (limit $LIMIT): $list"
pass "bay0 direct dependencies: $count / $LIMIT (${list:-none})"
