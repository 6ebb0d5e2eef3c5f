#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Builds the static release binaries that go into the initramfs and room images
# (glibc + crt-static: needs no extra rustup target) and links them under
# $ANCHOR_OUT/bin with stable names.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${CARGO_TARGET_DIR:=$ANCHOR_CACHE/target}"
export CARGO_TARGET_DIR
TARGET=x86_64-unknown-linux-gnu
BINS=(bay0 anchor-vmm anchor-agent anchor-jail anchorctl anchor-escape-probe)

# --target makes RUSTFLAGS apply to the target only, not to build scripts.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$TARGET" -p bay0 -p anchor-vmm -p anchor-agent -p anchor-jail -p anchorctl -p anchor-escape

mkdir -p "$ANCHOR_OUT/bin"
for b in "${BINS[@]}"; do
  src="$CARGO_TARGET_DIR/$TARGET/release/$b"
  [[ -x "$src" ]] || { echo "build-static: $src was not built" >&2; exit 1; }
  if ldd "$src" 2>&1 | grep -q '=>'; then
    echo "build-static: $b is dynamically linked" >&2; exit 1
  fi
  install -m 0755 "$src" "$ANCHOR_OUT/bin/$b"
  printf 'build-static: %-14s %8d bytes\n' "$b" "$(stat -c %s "$ANCHOR_OUT/bin/$b")"
done
