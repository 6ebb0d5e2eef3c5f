#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Builds Firecracker, the peer of vmm/bench.sh's cold-start figures, from source trees you
# provide (nothing here fetches from GitHub: only crates.io is reachable on our machines).
#
# usage: vmm/bench-firecracker.sh FIRECRACKER_SRC MICRO_HTTP_SRC
#   FIRECRACKER_SRC  a checkout of github.com/firecracker-microvm/firecracker at v1.16.1
#                    (its rust-toolchain.toml asks for Rust 1.95.0: the stable we use)
#   MICRO_HTTP_SRC   a checkout of github.com/firecracker-microvm/micro-http at the commit
#                    Firecracker's Cargo.lock names (its one git dependency)
# Output: $ANCHOR_CACHE/firecracker/firecracker (where vmm/bench.sh looks by default).
# Needs libseccomp-dev (scripts/setup.sh installs it). The source tree is copied, not
# modified: the git dependency is redirected to MICRO_HTTP_SRC with a [patch] section in
# the copy, and the rest of the dependencies come from crates.io.
set -euo pipefail
[[ $# -eq 2 ]] || { sed -n '3,14p' "$0" >&2; exit 2; }
src=$(realpath "$1")
http=$(realpath "$2")
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
out="$ANCHOR_CACHE/firecracker"
[[ -f "$src/src/firecracker/Cargo.toml" ]] || { echo "bench-firecracker: $src is not a Firecracker tree" >&2; exit 1; }
[[ -f "$http/Cargo.toml" ]] || { echo "bench-firecracker: $http is not a micro-http tree" >&2; exit 1; }
work="$out/src"
rm -rf "$work"
mkdir -p "$work"
cp -a "$src/." "$work/"
if ! grep -q 'patch."https://github.com/firecracker-microvm/micro-http"' "$work/Cargo.toml"; then
  cat >> "$work/Cargo.toml" <<EOF

[patch."https://github.com/firecracker-microvm/micro-http"]
micro_http = { path = "$http" }
EOF
fi
(cd "$work" && CARGO_TARGET_DIR="$out/target" \
  cargo build --release -p firecracker --target x86_64-unknown-linux-gnu)
install -m 0755 "$out/target/x86_64-unknown-linux-gnu/release/firecracker" "$out/firecracker"
"$out/firecracker" --version | head -n 1
echo "bench-firecracker: $out/firecracker"
