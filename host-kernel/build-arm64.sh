#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Build the Anchor OS host kernel for arm64 (QEMU `-M virt,virtualization=on` for the
# tests; Lenovo Duet 5 / sc7180 for the device): a Linux arm64 `Image` with KVM
# (VHE, and protected mode with kvm-arm.mode=protected), cross-compiled from Debian's
# linux-source-6.1 with tinyconfig + host-kernel/config-arm64.fragment (every option
# verified after olddefconfig). Cached under $ANCHOR_CACHE/kernels/host-arm64-<hash>;
# linked as $ANCHOR_OUT/aarch64/host-Image.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
KB_NAME=host
KB_ARCH=arm64
KB_CROSS=aarch64-linux-gnu-
KB_FRAGMENT="$here/config-arm64.fragment"
KB_TARGET=Image
KB_ARTIFACT=arch/arm64/boot/Image
KB_OUTNAME=aarch64/host-Image
KB_SCRIPT="$here/build-arm64.sh"
. "$here/kbuild-common.sh"
. "$here/kbuild-arch.sh"
kbuild_arch_main
