#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# BENCH-ONLY initramfs of the arm64 anchor host for tests/system/bench-arm64.sh: the arm64
# room (room Image + arm64 base.squashfs, 128 MiB, 1 vcpu, `quiet`, `anchor.shell=off`)
# booted N times by anchor-vmm and by QEMU's own `-M virt` (KVM, -cpu host, a virtio-blk
# disk and a virtio-rng like ours: the same devices for the same guest), alternating
# after one uncounted warm-up pair, each timed by the same helper as the x86_64 bench
# (bench-run: CLOCK_MONOTONIC at exec, first serial byte, the agent's marker, exit; its C
# source, tests/system/bench-tools/bench-run.c, cross-compiled static).
# Never the product initramfs and never used by a test.
#
# usage: mk-arm64-bench-initramfs.sh [--out PATH]   prints the path on stdout
#        (default $ANCHOR_CACHE/bench/arm64/initramfs-bench.cpio; uncompressed: gunzip
#        under TCG costs more than reading the bytes)
# /init, from its command line: bench.n=N (default 5), bench.timeout=S (default 120),
# bench.warmup=W (default 1). Prints `bench-result: vmm=ours|qemu run=I first_ms=..
# marker_ms=.. exit_ms=.. status=.. timeout=0|1` per run, then `bench-init: done`.
set -euo pipefail
SELF=$(realpath "$0")
HERE=$(dirname "$SELF")
# shellcheck source=tests/system/initramfs-lib.sh
source "$HERE/initramfs-lib.sh"
cd "$HERE/../.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
A="$ANCHOR_OUT/aarch64"
OUT="$ANCHOR_CACHE/bench/arm64/initramfs-bench.cpio"
die() { echo "mk-arm64-bench-initramfs: $*" >&2; exit 1; }
while (($#)); do
  case "$1" in
    --out) OUT="${2:?--out needs a path}"; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
for f in "$A/bin/anchor-vmm" "$A/guest-Image" "$A/images/base.squashfs"; do
  [[ -f "$f" ]] || die "$f missing: make arm64"
done
BUSYBOX=$(scripts/arm64-busybox.sh) || die "no arm64 busybox"
QROOT=$("$HERE/arm64-qemu-sysroot.sh") || die "no arm64 QEMU"
QEMU="$QROOT/usr/bin/qemu-system-aarch64"

# The shared libraries QEMU loads, resolved inside the sysroot (NEEDED closure).
libdirs=("$QROOT/lib/aarch64-linux-gnu" "$QROOT/usr/lib/aarch64-linux-gnu")
declare -A seen=()
libs=()
queue=("$QEMU")
while ((${#queue[@]})); do
  f=${queue[0]}; queue=("${queue[@]:1}")
  while read -r so; do
    [[ -n "${seen[$so]:-}" ]] && continue
    seen[$so]=1
    found=""
    for d in "${libdirs[@]}"; do [[ -e "$d/$so" ]] && { found="$d/$so"; break; }; done
    [[ -n "$found" ]] || die "$so (needed by $(basename "$f")) is not in $QROOT"
    libs+=("$found")
    queue+=("$(realpath "$found")")
  done < <(aarch64-linux-gnu-readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done
LDSO="$QROOT/lib/ld-linux-aarch64.so.1"
[[ -e "$LDSO" ]] || die "no arm64 dynamic loader in $QROOT"

HELPER_SRC=$(cat "$HERE/bench-tools/bench-run.c") || die "cannot read tests/system/bench-tools/bench-run.c"
[[ "$HELPER_SRC" == *"int main"* ]] || die "tests/system/bench-tools/bench-run.c has no main"

key=$( { sha256sum "$SELF" "$HERE/initramfs-lib.sh" "$A/bin/anchor-vmm" "$A/guest-Image" \
           "$A/images/base.squashfs" "$BUSYBOX" "$QEMU" "${libs[@]}"
         printf '%s' "$HELPER_SRC" | sha256sum; aarch64-linux-gnu-gcc --version | head -n 1; } |
       sha256sum | cut -d' ' -f1)
if [[ -f "$OUT" && -f "$OUT.key" && "$(cat "$OUT.key")" == "$key" ]]; then
  echo "$OUT"; exit 0
fi

stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,run,usr/bin,usr/lib/anchor/kernel,usr/lib/anchor/images,lib}
install -m 0755 "$BUSYBOX" "$stage/bin/busybox"
for a in sh mount cat sed cut ls poweroff sleep echo grep head tail seq dmesg; do
  ln -s busybox "$stage/bin/$a"
done
install -m 0755 "$A/bin/anchor-vmm" "$stage/usr/bin/anchor-vmm"
install -m 0644 "$A/guest-Image" "$stage/usr/lib/anchor/kernel/Image"
install -m 0644 "$A/images/base.squashfs" "$stage/usr/lib/anchor/images/base.squashfs"
install -m 0755 "$QEMU" "$stage/usr/bin/qemu-system-aarch64"
install -D -m 0755 "$(realpath "$LDSO")" "$stage/lib/ld-linux-aarch64.so.1"
for l in "${libs[@]}"; do install -D -m 0755 "$(realpath "$l")" "$stage/lib/aarch64-linux-gnu/$(basename "$l")"; done
printf '%s\n' "$HELPER_SRC" > "$stage/bench-run.c"
aarch64-linux-gnu-gcc -O2 -Wall -Wextra -Werror -static -o "$stage/usr/bin/bench-run" "$stage/bench-run.c"
rm "$stage/bench-run.c"

cat > "$stage/init" <<'EOF'
#!/bin/sh
# Bench-only /init of the arm64 anchor host (tests/system/mk-arm64-bench-initramfs.sh).
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
arg() { sed -n "s/.*bench\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
n=$(arg n); [ -n "$n" ] || n=5
tmo=$(arg timeout); [ -n "$tmo" ] || tmo=120
warm=$(arg warmup); [ -n "$warm" ] || warm=1
[ -c /dev/kvm ] || { echo "bench-init: FAIL: no /dev/kvm in the arm64 anchor host"; poweroff -f; }
K=/usr/lib/anchor/kernel/Image
IMG=/usr/lib/anchor/images/base.squashfs
ROOM="console=ttyS0 quiet panic=-1 root=/dev/vda ro rootfstype=squashfs init=/sbin/init anchor.room=base anchor.shell=off"
QROOM="console=ttyAMA0 quiet panic=-1 root=/dev/vda ro rootfstype=squashfs init=/sbin/init anchor.room=base anchor.shell=off"
MARK="anchor-agent: room base ready"
echo "bench-init: /dev/kvm present; $warm warm-up + $n runs per VMM, alternating"
echo "bench-init: $(qemu-system-aarch64 --version 2>&1 | head -n 1)"
first=1; [ "$warm" = 0 ] || first=0
run() {
  label=$1 i=$2; shift 2
  r=$(bench-run "$tmo" "$MARK" "/tmp/$label-$i.serial" "/tmp/$label-$i.err" -- "$@")
  echo "bench-result: vmm=$label run=$i $r"
  case "$r" in *"marker_ms=-1.0"*|*"timeout=1"*|*"status="[1-9]*) bad=1 ;; *) bad=0 ;; esac
  if [ "$i" = "$first" ] || [ "$bad" = 1 ]; then
    tail -n 20 "/tmp/$label-$i.serial" | sed "s/^/bench-serial[$label#$i]: /"
    tail -n 20 "/tmp/$label-$i.err" | sed "s/^/bench-stderr[$label#$i]: /"
  fi
}
vmms() {
  run ours "$1" anchor-vmm --kernel "$K" --disk "$IMG,ro" --cmdline "$ROOM" --mem-mib 128 --vcpus 1
  run qemu "$1" qemu-system-aarch64 -M virt,gic-version=host -accel kvm -cpu host -m 128 -smp 1 \
    -nodefaults -no-user-config -display none -no-reboot -serial stdio \
    -kernel "$K" -append "$QROOM" \
    -drive "id=root,file=$IMG,format=raw,if=none,readonly=on" -device virtio-blk-device,drive=root \
    -device virtio-rng-device
}
w=0
while [ "$w" -lt "$warm" ]; do vmms 0; w=$((w + 1)); done
for i in $(seq 1 "$n"); do vmms "$i"; done
echo "bench-init: done"
poweroff -f
EOF
chmod 0755 "$stage/init"
mknod -m 0600 "$stage/dev/console" c 5 1 2>/dev/null || true
mkdir -p "$(dirname "$OUT")"
cpio_stage "$stage" > "$OUT.tmp.$$"
mv "$OUT.tmp.$$" "$OUT"
echo "$key" > "$OUT.key"
printf 'mk-arm64-bench-initramfs: %s (%d bytes)\n' "$OUT" "$(stat -c %s "$OUT")" >&2
echo "$OUT"
