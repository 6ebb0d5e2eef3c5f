#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Proves images/build.sh is reproducible and produces a bootable layout:
#  1. builds FLAVOURS (default: base dev) twice from scratch, in two empty caches,
#     at different times and under different umasks, and requires identical bytes;
#  2. checks the image: /sbin/init is the agent, /bin/sh is busybox, the mount points
#     the agent needs exist, everything is owned by root with the fixed timestamp.
# Needs: the static agent (ANCHOR_AGENT or $ANCHOR_OUT/bin/anchor-agent) and escape probe
# (ANCHOR_ESCAPE_PROBE or $ANCHOR_OUT/bin/anchor-escape-probe),
# busybox-static, squashfs-tools, python3. Fails loudly if one is missing.
# The same checks run for the arm64 images (images/build.sh --arch aarch64, flavours
# ARM64_FLAVOURS, default: base): agent ANCHOR_AGENT_AARCH64 (default
# $ANCHOR_OUT/aarch64/bin/anchor-agent), escape probe ANCHOR_ESCAPE_PROBE_AARCH64 (default
# $ANCHOR_OUT/aarch64/bin/anchor-escape-probe), busybox ARM64_BUSYBOX (default
# $ANCHOR_CACHE/arm64/busybox, scripts/arm64-busybox.sh). ARM64_FLAVOURS= skips them.
set -euo pipefail
export TZ=UTC
here="$(cd "$(dirname "$0")/.." && pwd)"
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${ANCHOR_AGENT:=$ANCHOR_OUT/bin/anchor-agent}"
: "${ANCHOR_ESCAPE_PROBE:=$ANCHOR_OUT/bin/anchor-escape-probe}"
export ANCHOR_AGENT
: "${ANCHOR_AGENT_AARCH64:=$ANCHOR_OUT/aarch64/bin/anchor-agent}"
: "${ANCHOR_ESCAPE_PROBE_AARCH64:=$ANCHOR_OUT/aarch64/bin/anchor-escape-probe}"
: "${ARM64_BUSYBOX:=$ANCHOR_CACHE/arm64/busybox}"
read -r -a flavours <<<"${FLAVOURS:-base dev}"
read -r -a arm64_flavours <<<"${ARM64_FLAVOURS-base}"
command -v unsquashfs >/dev/null || { echo "FAIL: unsquashfs missing (squashfs-tools)"; exit 1; }
[[ -x "$ANCHOR_AGENT" ]] || { echo "FAIL: agent $ANCHOR_AGENT missing: run scripts/build-static.sh"; exit 1; }
[[ -x "$ANCHOR_ESCAPE_PROBE" ]] || { echo "FAIL: escape probe $ANCHOR_ESCAPE_PROBE missing: run scripts/build-static.sh"; exit 1; }
if ((${#arm64_flavours[@]})); then
    [[ -x "$ANCHOR_AGENT_AARCH64" ]] || { echo "FAIL: agent $ANCHOR_AGENT_AARCH64 missing: run scripts/build-static.sh aarch64"; exit 1; }
    [[ -x "$ARM64_BUSYBOX" ]] || { echo "FAIL: arm64 busybox $ARM64_BUSYBOX missing: run scripts/arm64-busybox.sh"; exit 1; }
    [[ -x "$ANCHOR_ESCAPE_PROBE_AARCH64" ]] || { echo "FAIL: escape probe $ANCHOR_ESCAPE_PROBE_AARCH64 missing: run scripts/build-static.sh aarch64"; exit 1; }
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail=0

# check ARCH AGENT FLAVOUR...: two clean builds, same bytes, right layout.
check_arch() {
local arch="$1" agent="$2" sub="" archarg=()
shift 2
local flavours=("$@")
if [[ "$arch" == aarch64 ]]; then sub=aarch64/; archarg=(--arch aarch64); fi
for run in 1 2; do
    mask=022; [[ $run == 2 ]] && mask=077
    ( umask "$mask"; ANCHOR_CACHE="$work/$arch-c$run" ANCHOR_OUT="$work/$arch-o$run" \
        ANCHOR_AGENT="$agent" BUSYBOX="${BUSYBOX_FOR_ARCH:-}" ANCHOR_ESCAPE_PROBE="$PROBE_FOR_ARCH" \
        "$here/build.sh" "${archarg[@]}" "${flavours[@]}" >/dev/null )
    [[ $run == 1 ]] && sleep 1.1
done

for f in "${flavours[@]}"; do
    local o1="$work/$arch-o1/${sub}images/$f.squashfs" o2="$work/$arch-o2/${sub}images/$f.squashfs"
    a="$(sha256sum <"$o1")"
    b="$(sha256sum <"$o2")"
    if [[ "$a" == "$b" ]]; then
        echo "ok: $arch $f.squashfs identical across two clean builds: sha256 ${a%% *}"
    else
        echo "FAIL: $arch $f.squashfs differs between two clean builds (${a%% *} vs ${b%% *})"
        fail=1
    fi

    listing="$(unsquashfs -lln "$o1")"
    check() { # pattern description
        if grep -qE "$1" <<<"$listing"; then echo "ok: $arch $f: $2"; else echo "FAIL: $arch $f: $2"; fail=1; fi
    }
    check '^-rwxr-xr-x 0/0 .* squashfs-root/sbin/init$' "/sbin/init is an executable owned by root"
    check '^lrwxrwxrwx 0/0 .* squashfs-root/bin/sh -> /bin/busybox$' "/bin/sh is busybox"
    check '^lrwxrwxrwx 0/0 .* squashfs-root/usr/bin/courier -> /sbin/init$' "courier is the agent (the courier client)"
    for d in proc sys dev tmp run var home root; do
        check "^d.* 0/0 .* squashfs-root/$d\$" "mount point /$d exists"
    done
    check '^drwx------ 0/0 .* squashfs-root/root$' "/root is private"
    check '^drwxrwxrwt 0/0 .* squashfs-root/tmp$' "/tmp is sticky"
    check '^-rwxr-xr-x 0/0 .* squashfs-root/usr/lib/anchor/escape/escape.sh$' "the escape suite is shipped"
    check '^-rwxr-xr-x 0/0 .* squashfs-root/usr/lib/anchor/escape/anchor-escape-probe$' "its probe is shipped"
    if grep -vE '^(|Parallel unsquashfs.*|[0-9]+ inodes.*)$' <<<"$listing" \
        | grep -vE ' 0/0 .* 1970-01-01 00:00 squashfs-root' | grep -q .; then
        echo "FAIL: $arch $f: an entry is not root-owned or not at the fixed timestamp"
        fail=1
    else
        echo "ok: $arch $f: every entry root-owned, timestamp 1970-01-01 00:00"
    fi
    if ! cmp -s <(unsquashfs -cat "$o1" sbin/init) "$agent"; then
        echo "FAIL: $arch $f: /sbin/init is not the agent binary"; fail=1
    else
        echo "ok: $arch $f: /sbin/init is byte-identical to $agent"
    fi
    if ! cmp -s <(unsquashfs -cat "$o1" usr/lib/anchor/escape/anchor-escape-probe) "$PROBE_FOR_ARCH"; then
        echo "FAIL: $arch $f: the escape probe is not $PROBE_FOR_ARCH"; fail=1
    else
        echo "ok: $arch $f: the escape probe is byte-identical to $PROBE_FOR_ARCH"
    fi
done
}

BUSYBOX_FOR_ARCH="" PROBE_FOR_ARCH="$ANCHOR_ESCAPE_PROBE" check_arch x86_64 "$ANCHOR_AGENT" "${flavours[@]}"
if ((${#arm64_flavours[@]})); then
    BUSYBOX_FOR_ARCH="$ARM64_BUSYBOX" PROBE_FOR_ARCH="$ANCHOR_ESCAPE_PROBE_AARCH64" check_arch aarch64 "$ANCHOR_AGENT_AARCH64" "${arm64_flavours[@]}"
fi
exit "$fail"
