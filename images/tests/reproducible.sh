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
set -euo pipefail
export TZ=UTC
here="$(cd "$(dirname "$0")/.." && pwd)"
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${ANCHOR_AGENT:=$ANCHOR_OUT/bin/anchor-agent}"
: "${ANCHOR_ESCAPE_PROBE:=$ANCHOR_OUT/bin/anchor-escape-probe}"
export ANCHOR_AGENT ANCHOR_ESCAPE_PROBE
read -r -a flavours <<<"${FLAVOURS:-base dev}"
command -v unsquashfs >/dev/null || { echo "FAIL: unsquashfs missing (squashfs-tools)"; exit 1; }
[[ -x "$ANCHOR_AGENT" ]] || { echo "FAIL: agent $ANCHOR_AGENT missing: run scripts/build-static.sh"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail=0

for run in 1 2; do
    mask=022; [[ $run == 2 ]] && mask=077
    ( umask "$mask"; ANCHOR_CACHE="$work/c$run" ANCHOR_OUT="$work/o$run" \
        "$here/build.sh" "${flavours[@]}" >/dev/null )
    [[ $run == 1 ]] && sleep 1.1
done

for f in "${flavours[@]}"; do
    a="$(sha256sum <"$work/o1/images/$f.squashfs")"
    b="$(sha256sum <"$work/o2/images/$f.squashfs")"
    if [[ "$a" == "$b" ]]; then
        echo "ok: $f.squashfs identical across two clean builds: sha256 ${a%% *}"
    else
        echo "FAIL: $f.squashfs differs between two clean builds (${a%% *} vs ${b%% *})"
        fail=1
    fi

    listing="$(unsquashfs -lln "$work/o1/images/$f.squashfs")"
    check() { # pattern description
        if grep -qE "$1" <<<"$listing"; then echo "ok: $f: $2"; else echo "FAIL: $f: $2"; fail=1; fi
    }
    check '^-rwxr-xr-x 0/0 .* squashfs-root/sbin/init$' "/sbin/init is an executable owned by root"
    check '^lrwxrwxrwx 0/0 .* squashfs-root/bin/sh -> /bin/busybox$' "/bin/sh is busybox"
    for d in proc sys dev tmp run var home root; do
        check "^d.* 0/0 .* squashfs-root/$d\$" "mount point /$d exists"
    done
    check '^drwx------ 0/0 .* squashfs-root/root$' "/root is private"
    check '^drwxrwxrwt 0/0 .* squashfs-root/tmp$' "/tmp is sticky"
    check '^-rwxr-xr-x 0/0 .* squashfs-root/usr/lib/anchor/escape/escape.sh$' "the escape suite is shipped"
    check '^-rwxr-xr-x 0/0 .* squashfs-root/usr/lib/anchor/escape/anchor-escape-probe$' "its probe is shipped"
    if grep -vE '^(|Parallel unsquashfs.*|[0-9]+ inodes.*)$' <<<"$listing" \
        | grep -vE ' 0/0 .* 1970-01-01 00:00 squashfs-root' | grep -q .; then
        echo "FAIL: $f: an entry is not root-owned or not at the fixed timestamp"
        fail=1
    else
        echo "ok: $f: every entry root-owned, timestamp 1970-01-01 00:00"
    fi
    if ! cmp -s <(unsquashfs -cat "$work/o1/images/$f.squashfs" sbin/init) "$ANCHOR_AGENT"; then
        echo "FAIL: $f: /sbin/init is not the agent binary"; fail=1
    else
        echo "ok: $f: /sbin/init is byte-identical to $ANCHOR_AGENT"
    fi
done
exit "$fail"
