#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Builds anchor-outside (static; the anchor host has no C library of its own to offer
# it) at the path given: tests/system/net-tools/build.sh OUT
set -euo pipefail
out="${1:?usage: build.sh OUT}"
src="$(dirname "$(realpath "$0")")/anchor-outside.c"
command -v gcc >/dev/null || { echo "net-tools: gcc missing: apt-get install gcc libc6-dev" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
if [[ ! -x "$out" || "$src" -nt "$out" ]]; then
  gcc -O2 -Wall -Wextra -Werror -static -o "$out.tmp" "$src"
  mv "$out.tmp" "$out"
fi
