#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Builds the static release binaries that go into the initramfs and room images
# (glibc + crt-static: needs no musl target) and links them under stable names.
#
# usage: scripts/build-static.sh [x86_64|aarch64]     (default x86_64)
#   x86_64   bay0, anchor-vmm, anchor-agent, anchor-jail, anchor-courier, anchorctl,
#            anchor-update, anchor-escape-probe                    -> $ANCHOR_OUT/bin/
#   aarch64  the same but anchor-update (no arm64 UKI yet)        -> $ANCHOR_OUT/aarch64/bin/
#            (cross build: rust std for aarch64-unknown-linux-gnu from rustup, linker
#            aarch64-linux-gnu-gcc from Debian's gcc-aarch64-linux-gnu)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${CARGO_TARGET_DIR:=$(scripts/cargo-target.sh)}"
export CARGO_TARGET_DIR
die() { echo "build-static: $*" >&2; exit 1; }

ARCH="${1:-x86_64}"
case "$ARCH" in
  x86_64)
    TARGET=x86_64-unknown-linux-gnu
    BINS=(bay0 anchor-vmm anchor-agent anchor-jail anchor-courier anchorctl anchor-update anchor-escape-probe)
    DEST="$ANCHOR_OUT/bin"
    READELF=readelf
    ;;
  aarch64 | arm64)
    ARCH=aarch64
    TARGET=aarch64-unknown-linux-gnu
    BINS=(bay0 anchor-vmm anchor-agent anchor-jail anchor-courier anchorctl anchor-escape-probe)
    DEST="$ANCHOR_OUT/aarch64/bin"
    READELF=aarch64-linux-gnu-readelf
    command -v aarch64-linux-gnu-gcc >/dev/null ||
      die "aarch64-linux-gnu-gcc missing: apt-get install gcc-aarch64-linux-gnu (scripts/setup.sh)"
    rustup target list --installed 2>/dev/null | grep -qx "$TARGET" ||
      die "rust std for $TARGET missing: rustup target add $TARGET (scripts/setup.sh)"
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    ;;
  *) die "unknown architecture '$ARCH' (x86_64 or aarch64)" ;;
esac

pkgs=()
for b in "${BINS[@]}"; do
  # Binaries are named after their package, but for the escape suite's probe.
  case "$b" in anchor-escape-probe) pkgs+=(-p anchor-escape) ;; *) pkgs+=(-p "$b") ;; esac
done
# --target makes RUSTFLAGS apply to the target only, not to build scripts.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$TARGET" "${pkgs[@]}"

mkdir -p "$DEST"
for b in "${BINS[@]}"; do
  src="$CARGO_TARGET_DIR/$TARGET/release/$b"
  [[ -x "$src" ]] || die "$src was not built"
  # A dynamic executable names its program interpreter; a static one has none.
  if "$READELF" -l "$src" | grep -q 'program interpreter'; then
    die "$b ($ARCH) is dynamically linked"
  fi
  install -m 0755 "$src" "$DEST/$b"
  printf 'build-static: %-7s %-14s %8d bytes\n' "$ARCH" "$b" "$(stat -c %s "$DEST/$b")"
done

# anchor-vault links libtss2 and libcryptsetup, which Debian ships only as shared
# libraries: it is built dynamically (host target dir, no crt-static) and the initramfs
# builder copies it with its libraries and the loader (tests/system/mkinitramfs.sh).
# x86_64 only: no arm64 initramfs carries it yet.
if [[ "$ARCH" == x86_64 ]]; then
  cargo build --release --locked -p anchor-vault
  install -m 0755 "$CARGO_TARGET_DIR/release/anchor-vault" "$ANCHOR_OUT/bin/anchor-vault"
  printf 'build-static: %-14s %8d bytes (dynamic)\n' anchor-vault "$(stat -c %s "$ANCHOR_OUT/bin/anchor-vault")"
fi
