#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Build the Anchor OS room (guest) kernel for arm64: a Linux arm64 `Image` (the boot
# protocol anchor-vmm implements on aarch64: header, load offset, x0 = device tree),
# cross-compiled from Debian's linux-source-6.1 with tinyconfig +
# guest-kernel/config-arm64.fragment (every option verified after olddefconfig).
# Cached under $ANCHOR_CACHE/kernels/guest-arm64-<hash>; linked as
# $ANCHOR_OUT/aarch64/guest-Image. Shares the source tree and the
# one-kernel-build-at-a-time lock with the other kernel builds.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
KB_NAME=guest
KB_ARCH=arm64
KB_CROSS=aarch64-linux-gnu-
KB_FRAGMENT="$here/config-arm64.fragment"
KB_TARGET=Image
KB_ARTIFACT=arch/arm64/boot/Image
KB_OUTNAME=aarch64/guest-Image
KB_SCRIPT="$here/build-arm64.sh"
. "$here/../host-kernel/kbuild-common.sh"
. "$here/../host-kernel/kbuild-arch.sh"
kbuild_arch_main
