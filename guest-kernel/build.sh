#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Build the Anchor OS room (guest) kernel: an ELF vmlinux with the PVH entry note,
# from Debian's linux-source-6.1 with tinyconfig + guest-kernel/config-x86_64.fragment
# (every option verified after olddefconfig). Cached under
# $ANCHOR_CACHE/kernels/guest-<hash>; linked as $ANCHOR_OUT/guest-vmlinux.
# A second run with the same inputs is a no-op. Shares the extracted source tree and
# the one-kernel-build-at-a-time lock with host-kernel/build.sh.
# (The arm64 kernel, from config-arm64.fragment, is build-arm64.sh's.)
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
KB_NAME=guest
KB_FRAGMENT="$here/config-x86_64.fragment"
KB_TARGET=vmlinux
KB_ARTIFACT=vmlinux
KB_OUTNAME=guest-vmlinux
KB_SCRIPT="$here/build.sh"
. "$here/../host-kernel/kbuild-common.sh"
kbuild_main
