#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Provides a static arm64 busybox for the arm64 room images and the arm64 test
# initramfs: Debian's busybox-static for arm64, fetched with apt (the package cannot be
# installed beside the amd64 one -- same /bin/busybox -- so it is downloaded and
# unpacked into the cache). Adds the arm64 architecture to dpkg once (root) so that
# apt has the arm64 package lists. Idempotent; prints the path on stdout.
#
# Output: $ANCHOR_CACHE/arm64/busybox-<version>/busybox, linked as
#         $ANCHOR_CACHE/arm64/busybox.
set -euo pipefail
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
die() { echo "arm64-busybox: $*" >&2; exit 1; }
dir="$ANCHOR_CACHE/arm64"
link="$dir/busybox"
if [[ -x "$link" ]]; then readlink -f "$link"; exit 0; fi
[[ $(id -u) -eq 0 ]] || die "not root: cannot add the arm64 architecture to dpkg"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "arm64-busybox: adding the arm64 architecture to dpkg (package lists only)" >&2
  dpkg --add-architecture arm64
  apt-get update -q >&2 || die "apt-get update failed"
fi
version=$(apt-cache policy busybox-static:arm64 2>/dev/null | sed -n 's/^  Candidate: //p')
if [[ -z "$version" || "$version" == "(none)" ]]; then
  apt-get update -q >&2 || die "apt-get update failed"
  version=$(apt-cache policy busybox-static:arm64 | sed -n 's/^  Candidate: //p')
fi
[[ -n "$version" && "$version" != "(none)" ]] || die "no busybox-static:arm64 in the apt lists"
dest="$dir/busybox-$version"
if [[ ! -x "$dest/busybox" ]]; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/arm64-busybox.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -q "busybox-static:arm64=$version" >&2) ||
    die "apt-get download busybox-static:arm64=$version failed"
  dpkg-deb -x "$tmp"/busybox-static_*_arm64.deb "$tmp/x"
  [[ -x "$tmp/x/bin/busybox" ]] || die "the package has no /bin/busybox"
  mkdir -p "$dest"
  install -m 0755 "$tmp/x/bin/busybox" "$dest/busybox.tmp"
  mv "$dest/busybox.tmp" "$dest/busybox"
fi
ln -sfn "busybox-$version/busybox" "$link.tmp.$$"
mv -T "$link.tmp.$$" "$link"
readlink -f "$link"
