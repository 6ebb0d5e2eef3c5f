#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# mkinitramfs.sh's cache (keyed by the hash of its inputs) after a power cut: an archive
# renamed into the cache before its bytes reached the disk comes back empty or cut off
# under its final, hash-named path. The next run must build it again, never link it as
# the initramfs. Here the cut is simulated by truncating the cached archive in place.
# Needs: a static executable to stand in for bay0 (busybox-static's /bin/busybox), gzip.
set -euo pipefail
here="$(cd "$(dirname "$0")/../../.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fake_bay0=/bin/busybox
[[ -x $fake_bay0 ]] || { echo "FAIL: $fake_bay0 missing (busybox-static)"; exit 1; }
export ANCHOR_CACHE="$work/cache" ANCHOR_OUT="$work/out"
mk() { "$here/tests/system/mkinitramfs.sh" --minimal --bay0 "$fake_bay0" --out "$work/out/i.cpio.gz" >/dev/null; }
mk
gzip -t "$work/out/i.cpio.gz" || { echo "FAIL: the first build is not a gzip archive"; exit 1; }
good=$(sha256sum <"$work/out/i.cpio.gz")
cached=("$work"/cache/initramfs/*.cpio.gz)
[[ ${#cached[@]} -eq 1 ]] || { echo "FAIL: expected one cached archive, got ${#cached[@]}"; exit 1; }
for cut in 0 100; do
  rm -f "$work/out/i.cpio.gz"
  truncate -s "$cut" "${cached[0]}"
  mk
  if ! gzip -t "$work/out/i.cpio.gz" 2>/dev/null; then
    echo "FAIL: a cached archive cut to $cut bytes was linked as the initramfs"
    exit 1
  fi
  [[ $(sha256sum <"$work/out/i.cpio.gz") == "$good" ]] || { echo "FAIL: rebuilt archive differs"; exit 1; }
done
echo "PASS: mkinitramfs rebuilds a cached archive a power cut left empty or cut off"
