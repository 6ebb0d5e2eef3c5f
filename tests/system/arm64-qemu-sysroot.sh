#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# BENCH-ONLY: an arm64 QEMU (Debian's qemu-system-arm for arm64) with the arm64 shared
# libraries it loads, so the arm64 anchor host can boot the same room with QEMU's own
# `-M virt` as the peer of anchor-vmm (tests/system/bench-arm64.sh). The packages are
# downloaded with apt (the arm64 lists come from scripts/arm64-busybox.sh's
# `dpkg --add-architecture arm64`) and unpacked, never installed.
#
# usage: arm64-qemu-sysroot.sh   prints the sysroot path; cached under
#        $ANCHOR_CACHE/arm64/qemu-sysroot-<version>/ (usr/bin/qemu-system-aarch64 inside)
set -euo pipefail
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
die() { echo "arm64-qemu-sysroot: $*" >&2; exit 1; }
dpkg --print-foreign-architectures | grep -qx arm64 ||
  die "the arm64 architecture is not in dpkg: run scripts/arm64-busybox.sh (scripts/setup.sh) first"
version=$(apt-cache policy qemu-system-arm:arm64 | sed -n 's/^  Candidate: //p')
[[ -n "$version" && "$version" != "(none)" ]] || die "no qemu-system-arm:arm64 in the apt lists"
root="$ANCHOR_CACHE/arm64/qemu-sysroot-${version//[:+~]/_}"
if [[ -x "$root/usr/bin/qemu-system-aarch64" ]]; then echo "$root"; exit 0; fi
# The package and every arm64 package in its dependency closure (libraries, mostly).
mapfile -t pkgs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances qemu-system-arm:arm64 2>/dev/null |
  grep -E '^[a-z0-9][a-z0-9.+-]*:arm64$' | sort -u)
((${#pkgs[@]} > 10)) || die "could not resolve qemu-system-arm:arm64's dependencies"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/arm64-qemu.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "arm64-qemu-sysroot: downloading ${#pkgs[@]} arm64 packages (qemu-system-arm $version + libraries)" >&2
(cd "$tmp" && apt-get download -q "${pkgs[@]}" >&2 2>/dev/null) || die "apt-get download failed"
mkdir -p "$tmp/root"
for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$tmp/root"; done
[[ -x "$tmp/root/usr/bin/qemu-system-aarch64" ]] || die "no qemu-system-aarch64 in the packages"
mkdir -p "$(dirname "$root")"
rm -rf "$root"
mv "$tmp/root" "$root"
echo "$root"
