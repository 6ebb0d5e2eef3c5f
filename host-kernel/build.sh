#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Build the Anchor OS host kernel (x86_64 bzImage) from Debian's linux-source-6.1:
# tinyconfig + host-kernel/config-x86_64.fragment, every fragment option verified
# after olddefconfig. Cached under $ANCHOR_CACHE/kernels/host-<hash>; the result is
# linked as $ANCHOR_OUT/host-bzImage. A second run with the same inputs is a no-op.
# (The arm64 kernel, from config-arm64.fragment, is build-arm64.sh's.)
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
KB_NAME=host
KB_FRAGMENT="$here/config-x86_64.fragment"
KB_TARGET=bzImage
KB_ARTIFACT=arch/x86/boot/bzImage
KB_OUTNAME=host-bzImage
KB_SCRIPT="$here/build.sh"
. "$here/kbuild-common.sh"
kbuild_main
