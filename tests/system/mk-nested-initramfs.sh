#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# TEST-ONLY initramfs for the nested-room system test (tests/nested_room.rs): a busybox
# shell script as /init that mounts the basics, reports /dev/kvm, and runs
# anchor-vmm on the room kernel + base image, exactly the command a person would type.
# It isolates the VMM-level path from bay0's room lifecycle (tests/room.rs tests that);
# it is never part of the product initramfs (tests/system/mkinitramfs.sh builds that one).
#
# usage: mk-nested-initramfs.sh [--out PATH]   (default $ANCHOR_CACHE/systest/initramfs-nested.cpio.gz)
# Inputs: $ANCHOR_OUT/bin/anchor-vmm, $ANCHOR_OUT/guest-vmlinux,
#         $ANCHOR_OUT/images/base.squashfs, BUSYBOX (default /bin/busybox, static).
# /init reads nested.room=NAME from its kernel command line (default base): the image
# /usr/lib/anchor/images/NAME.squashfs and anchor.room=NAME for the agent.
# With nested.vsock=PORT it instead runs the room with a vsock device and the agent's
# echo service on PORT, and plays the host side of Firecracker-style hybrid vsock with
# socat (copied in with its libraries: test-only): connect to the VMM's Unix socket,
# `CONNECT PORT`, expect `OK <host port>`, send a line, expect it back.
set -euo pipefail
SELF=$(realpath "$0")
# shellcheck source=tests/system/initramfs-lib.sh
source "$(dirname "$SELF")/initramfs-lib.sh"
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${BUSYBOX:=/bin/busybox}"
OUT="$ANCHOR_CACHE/systest/initramfs-nested.cpio.gz"
die() { echo "mk-nested-initramfs: $*" >&2; exit 1; }
while (($#)); do
  case "$1" in
    --out) OUT="${2:?--out needs a path}"; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
VMM="$ANCHOR_OUT/bin/anchor-vmm"
KERNEL="$ANCHOR_OUT/guest-vmlinux"
[[ -x "$VMM" ]] || die "$VMM missing: run scripts/build-static.sh"
[[ -f "$KERNEL" ]] || die "$KERNEL missing: run guest-kernel/build.sh"
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX missing: apt-get install busybox-static"
images=("$ANCHOR_OUT"/images/*.squashfs)
[[ -f "${images[0]}" ]] || die "no room images in $ANCHOR_OUT/images: run images/build.sh"

stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,run,usr/bin,usr/lib/anchor/kernel,usr/lib/anchor/images}
install -m 0755 "$BUSYBOX" "$stage/bin/busybox"
for a in sh mount mkdir cat sed cut ls uname poweroff sleep echo grep kill head seq; do ln -s busybox "$stage/bin/$a"; done
# socat and the shared libraries it loads (host side of the vsock round trip).
SOCAT=$(command -v socat) || die "socat missing: apt-get install socat"
install -D -m 0755 "$SOCAT" "$stage/usr/bin/socat"
while read -r lib; do
  install -D -m 0755 "$lib" "$stage$lib"
done < <(libs_of "$SOCAT")
install -m 0755 "$VMM" "$stage/usr/bin/anchor-vmm"
install -m 0644 "$KERNEL" "$stage/usr/lib/anchor/kernel/vmlinux"
for f in "${images[@]}"; do install -m 0644 "$f" "$stage/usr/lib/anchor/images/"; done
cat > "$stage/init" <<'EOF'
#!/bin/sh
# Test-only /init (tests/system/mk-nested-initramfs.sh): launch one room by hand.
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
up() { cut -d' ' -f1 /proc/uptime; }
if [ -c /dev/kvm ]; then echo "nested-init: /dev/kvm present"; else echo "nested-init: /dev/kvm absent"; fi
room=$(sed -n 's/.*nested\.room=\([a-z0-9_-]*\).*/\1/p' /proc/cmdline)
[ -n "$room" ] || room=base
port=$(sed -n 's/.*nested\.vsock=\([0-9]*\).*/\1/p' /proc/cmdline)
base="console=ttyS0 quiet reboot=k root=/dev/vda ro rootfstype=squashfs init=/sbin/init anchor.room=$room"
if [ -n "$port" ]; then
  uds=/tmp/room.vsock
  anchor-vmm --kernel /usr/lib/anchor/kernel/vmlinux --disk "/usr/lib/anchor/images/$room.squashfs,ro" \
    --cmdline "$base anchor.vsock_echo=$port" --mem-mib 128 --vsock-cid 3 --vsock-uds "$uds" </dev/null &
  vmm=$!
  echo "nested-init: room $room with vsock echo on port $port (anchor-vmm pid $vmm)"
  # Until the guest listens, the VMM answers CONNECT by closing: retry (bounded).
  for i in $(seq 1 120); do
    # Keep our write side open while the echo comes back: a host-side EOF closes the
    # vsock connection in both directions (hybrid vsock semantics).
    reply=$( (printf 'CONNECT %s\nhello-vsock-%s\n' "$port" "$i"; sleep 2) | socat -t 1 - "UNIX-CONNECT:$uds" 2>/dev/null)
    case "$reply" in
      OK*hello-vsock-*) echo "nested-init: vsock reply: $(echo "$reply" | head -n 1) then $(echo "$reply" | grep hello-vsock)"; break ;;
    esac
    sleep 0.5
  done
  case "$reply" in OK*hello-vsock-*) ;; *) echo "nested-init: vsock round trip FAILED (last reply: '$reply')" ;; esac
  kill "$vmm"; wait "$vmm"
  echo "nested-init: vsock test done"
  poweroff -f
fi
cmdline="$base anchor.shell=off"
echo "nested-init: starting anchor-vmm at $(up) s: --kernel /usr/lib/anchor/kernel/vmlinux --disk /usr/lib/anchor/images/$room.squashfs,ro --mem-mib 128 --cmdline \"$cmdline\""
anchor-vmm --kernel /usr/lib/anchor/kernel/vmlinux --disk "/usr/lib/anchor/images/$room.squashfs,ro" \
  --cmdline "$cmdline" --mem-mib 128 </dev/null
echo "nested-init: anchor-vmm exited with status $? at $(up) s"
poweroff -f
EOF
chmod 0755 "$stage/init"
mknod -m 0600 "$stage/dev/console" c 5 1 2>/dev/null || true
mkdir -p "$(dirname "$OUT")"
cpio_stage "$stage" | gzip -n -1 > "$OUT.tmp.$$"
mv "$OUT.tmp.$$" "$OUT"
printf 'mk-nested-initramfs: %s (%d bytes)\n' "$OUT" "$(stat -c %s "$OUT")"
