#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# BENCH-ONLY initramfs for tests/system/bench-nested.sh: rooms nested in the anchor host,
# anchor-vmm vs QEMU microvm (and, when given, an earlier anchor-vmm build). Never the
# product initramfs (tests/system/mkinitramfs.sh builds that one) and never used by a test.
#
# usage: mk-bench-initramfs.sh [--out PATH]   (default $ANCHOR_OUT/bench/initramfs-nested-bench.cpio)
# Prints the path of the initramfs on stdout. Cached: rebuilt only when an input changed
# (key = sha256 of this script and every file copied in, stored in PATH.key).
# Inputs: $ANCHOR_OUT/bin/anchor-vmm, $ANCHOR_OUT/guest-vmlinux, $ANCHOR_OUT/images/base.squashfs,
#         BENCH_VMM_BEFORE (optional: another anchor-vmm binary, e.g. the one before a change,
#         measured as a third VMM "before"), BUSYBOX (default /bin/busybox, static),
#         qemu-system-x86_64 with every shared library ldd lists, QEMU's qboot.rom (microvm
#         firmware), gcc + static glibc (libc6-dev) for the helpers in bench-tools/,
#         mksquashfs.
#
# Contents: busybox /init (below), anchor-vmm, the room kernel, base.squashfs, QEMU + its
# libraries + qboot.rom, and the static helpers from tests/system/bench-tools/:
#   /usr/bin/bench-run    execs a VMM with the room console on a pipe and stamps
#                         CLOCK_MONOTONIC at exec, first byte, marker, VMM exit and once
#                         every process it started is gone (subreaper); can type a command
#                         file into the room's shell; samples KVM exit counters at marks.
#   /usr/bin/vsock-peer   the host end of the room's vsock transfers.
#   roombench             the in-room I/O program, on a small squashfs that /init pads
#                         with zeros to a 64 MiB "bench disk" in the anchor host's tmpfs
#                         (the room mounts it to run roombench and reads the raw device
#                         for the disk figures).
#   passt + anchor-outside  network runs: the same passt (user-mode stack, the rooms' own)
#                         behind each VMM, anchor-outside (tests/system/net-tools) in its own
#                         network namespace as the peer; roombench tcp-get / tcp-connect.
# Both VMMs go through the same helper, so the measurement overhead is the same for both.
# The cpio is not compressed: gunzip of ~80 MB under TCG would cost more than copying it.
#
# /init, from its kernel command line: bench.n=N (boot runs per VMM, default 5),
# bench.qrng=0|1 (QEMU's room gets a virtio-rng-device like ours, default 1),
# bench.io=M (I/O runs per VMM, default 2; 0 = none), bench.qcpu=MODEL (QEMU's -cpu inside,
# default host), bench.timeout=S (per boot run, default 120), bench.iotimeout=S (per I/O run,
# default 600), bench.warmup=W (uncounted warm-up rounds, reported as run=0, default 1),
# bench.vmms=ours,before,qemu (which VMMs, default every one present), bench.net=K (network
# runs per VMM, default 1; 0 = none), bench.nettimeout=S (per network run, default 240),
# bench.verbose=1
# (diagnostic: room console without `quiet`, with printk times, printed in full for every
# run).
# Per boot run: `bench-result: vmm=ours|before|qemu run=I first_ms=.. marker_ms=.. exit_ms=..
# gone_ms=.. status=.. timeout=0|1 guest_uptime_s=.. host_uptime_s=..`, between
# `bench-jit: begin|end vmm=.. run=I` marks (each followed by a 0.3 s pause); per I/O run:
# `bench-io: vmm=.. run=I <bench-run fields> <roombench key=value fields>`; per network run
# `bench-net: vmm=.. run=I <bench-run fields> <roombench key=value fields>`; then
# `bench-init: done` and power-off.
set -euo pipefail
SELF=$(realpath "$0")
# shellcheck source=tests/system/initramfs-lib.sh
source "$(dirname "$SELF")/initramfs-lib.sh"
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${BUSYBOX:=/bin/busybox}"
OUT="$ANCHOR_OUT/bench/initramfs-nested-bench.cpio"
die() { echo "mk-bench-initramfs: $*" >&2; exit 1; }
while (($#)); do
  case "$1" in
    --out) OUT="${2:?--out needs a path}"; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
VMM="$ANCHOR_OUT/bin/anchor-vmm"
KERNEL="$ANCHOR_OUT/guest-vmlinux"
IMAGE="$ANCHOR_OUT/images/base.squashfs"
[[ -x "$VMM" ]] || die "$VMM missing: run scripts/build-static.sh"
[[ -f "$KERNEL" ]] || die "$KERNEL missing: run guest-kernel/build.sh"
[[ -f "$IMAGE" ]] || die "$IMAGE missing: run images/build.sh"
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX missing: apt-get install busybox-static"
QEMU=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 missing: apt-get install qemu-system-x86"
QEMU=$(realpath "$QEMU")
BEFORE="${BENCH_VMM_BEFORE:-}"
[[ -z "$BEFORE" || -x "$BEFORE" ]] || die "BENCH_VMM_BEFORE=$BEFORE is not an executable"
TOOLS="$(dirname "$SELF")/bench-tools"
command -v mksquashfs >/dev/null || die "mksquashfs missing: apt-get install squashfs-tools"
QBOOT=""
for f in /usr/share/qemu/qboot.rom /usr/share/qboot/bios.bin /usr/share/seabios/qboot.rom; do
  [[ -f "$f" ]] && { QBOOT="$f"; break; }
done
[[ -n "$QBOOT" ]] || die "qboot.rom (QEMU's microvm firmware) not found: apt-get install qemu-system-data"
command -v gcc >/dev/null || die "gcc missing: apt-get install gcc libc6-dev"
PASST=$(command -v passt) || die "passt missing: apt-get install passt"
NETTOOLS="$(dirname "$SELF")/net-tools"
mapfile -t LIBS < <( { libs_of "$QEMU"; libs_of "$PASST"; } | sort -u)
((${#LIBS[@]} > 0)) || die "ldd lists no libraries for $QEMU"

# Cache key: this script (it holds /init and the helper) and every input file.
key=$( { sha256sum "$SELF" "$INITRAMFS_LIB" "$VMM" "$KERNEL" "$IMAGE" "$BUSYBOX" "$QEMU" "$QBOOT" \
           "${LIBS[@]}" "$TOOLS"/*.c "$PASST" "$NETTOOLS"/*.c ${BEFORE:+"$BEFORE"}
         gcc --version | head -n 1; mksquashfs -version | head -n 1; } | sha256sum | cut -d' ' -f1)
if [[ -f "$OUT" && -f "$OUT.key" && "$(cat "$OUT.key")" == "$key" ]]; then
  echo "mk-bench-initramfs: $OUT up to date" >&2
  echo "$OUT"
  exit 0
fi

stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,run,usr/bin,usr/lib/anchor/kernel,usr/lib/anchor/images}
install -m 0755 "$BUSYBOX" "$stage/bin/busybox"
for a in sh mount mkdir cat sed cut ls uname poweroff sleep echo grep head tail seq dmesg dd rm \
         ip unshare nsenter chroot kill tr; do
  ln -s busybox "$stage/bin/$a"
done
install -m 0755 "$VMM" "$stage/usr/bin/anchor-vmm"
[[ -z "$BEFORE" ]] || install -m 0755 "$BEFORE" "$stage/usr/bin/anchor-vmm-before"
install -m 0644 "$KERNEL" "$stage/usr/lib/anchor/kernel/vmlinux"
install -m 0644 "$IMAGE" "$stage/usr/lib/anchor/images/base.squashfs"
install -m 0755 "$QEMU" "$stage/usr/bin/qemu-system-x86_64"
for lib in "${LIBS[@]}"; do install -D -m 0755 "$lib" "$stage$lib"; done
install -D -m 0644 "$QBOOT" "$stage/usr/share/qemu/qboot.rom"

for t in bench-run vsock-peer roombench; do
  gcc -O2 -Wall -Wextra -Werror -static -o "$stage/usr/bin/$t" "$TOOLS/$t.c"
done
install -m 0755 "$PASST" "$stage/usr/bin/passt"
[[ -x "$PASST.avx2" ]] && install -m 0755 "$PASST.avx2" "$stage/usr/bin/passt.avx2"
"$NETTOOLS/build.sh" "$stage/usr/bin/anchor-outside"
# roombench on a squashfs (/init pads it to the 64 MiB bench disk at run time).
mkdir "$stage/rb"
mv "$stage/usr/bin/roombench" "$stage/rb/roombench"
mksquashfs "$stage/rb" "$stage/usr/lib/anchor/images/roombench.squashfs" -noappend -no-progress \
  -quiet -all-root -comp zstd -mkfs-time 0 -all-time 0 >/dev/null
rm -r "$stage/rb"

cat > "$stage/init" <<'EOF'
#!/bin/sh
# Bench-only /init (tests/system/mk-bench-initramfs.sh): the same room booted by anchor-vmm,
# QEMU microvm (and anchor-vmm-before when present), alternating, after W warm-up rounds,
# each timed by bench-run; then I/O runs (disk, vsock, in-room loopback) per VMM.
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# cgroup2 with favordynmods, as bay0 mounts it in the product's anchor host: without it,
# every KVM_CREATE_VM (ours and QEMU's) waits for an RCU grace period while KVM moves the
# VM's worker thread into the creator's cgroups (5-12 ms per room here, ~1 ms with it).
mkdir -p /sys/fs/cgroup
mount -t cgroup2 -o favordynmods cgroup2 /sys/fs/cgroup ||
  echo "bench-init: cgroup2 with favordynmods could not be mounted: VM creation waits for RCU"
arg() { sed -n "s/.*bench\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
n=$(arg n); [ -n "$n" ] || n=5
io=$(arg io); [ -n "$io" ] || io=2
qcpu=$(arg qcpu); [ -n "$qcpu" ] || qcpu=host
qrng=$(arg qrng); [ -n "$qrng" ] || qrng=1
tmo=$(arg timeout); [ -n "$tmo" ] || tmo=120
iotmo=$(arg iotimeout); [ -n "$iotmo" ] || iotmo=600
verbose=$(arg verbose)
warm=$(arg warmup); [ -n "$warm" ] || warm=1
if [ ! -c /dev/kvm ]; then
  echo "bench-init: FAIL: no /dev/kvm in the anchor host (needs KVM_AMD and -cpu max)"
  poweroff -f
fi
K=/usr/lib/anchor/kernel/vmlinux
IMG=/usr/lib/anchor/images/base.squashfs
BASE="console=ttyS0 quiet reboot=k root=/dev/vda ro rootfstype=squashfs init=/sbin/init anchor.room=base"
ROOM="$BASE anchor.shell=off"
MARK="anchor-agent: room base ready"
lines=20
first=1; [ "$warm" = 0 ] || first=0
if [ "$verbose" = 1 ]; then
  # Diagnostic: full room console with timestamps (slower: each serial byte is a nested exit).
  ROOM=$(echo "$ROOM" | sed 's/ quiet / printk.time=1 /')
  lines=400
fi
VMMS="ours qemu"
[ -x /usr/bin/anchor-vmm-before ] && VMMS="ours before qemu"
only=$(arg vmms); [ -n "$only" ] && VMMS=$(echo "$only" | tr , ' ')
STATS_BEFORE=""
anchor-vmm-before --help 2>/dev/null | grep -q -- --exit-stats && STATS_BEFORE=--exit-stats
echo "bench-init: room cmdline: $ROOM"
echo "bench-init: /dev/kvm present; VMMs: $VMMS; $warm warm-up round(s) + $n boot runs and $io I/O runs per VMM, alternating; qemu -cpu $qcpu, virtio-rng $([ "$qrng" = 0 ] && echo no || echo yes); $(grep -m1 'model name' /proc/cpuinfo)"
echo "bench-init: $(qemu-system-x86_64 --version 2>&1 | head -n 1)"
# Sets "$@" to the command line of VMM $1 for kernel command line $2, with the bench disk
# $3 (or none) and, for anchor-vmm when $4 = io, vsock + --exit-stats.
vmm_args() {
  v=$1 cl=$2 disk=$3 mode=$4
  case "$v" in
    ours|before)
      bin=anchor-vmm; extra=""
      [ "$v" = before ] && bin=anchor-vmm-before
      if [ "$v" = ours ]; then extra="--exit-stats"; else extra="$STATS_BEFORE"; fi
      [ "$mode" = io ] && extra="$extra --vsock-cid 3 --vsock-uds /tmp/v-$v.sock"
      # shellcheck disable=SC2086
      set -- "$bin" --kernel "$K" --disk "$IMG,ro" ${disk:+--disk "$disk,ro"} --cmdline "$cl" \
        --mem-mib 128 --vcpus 1 $extra ;;
    qemu)
      set -- qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=off,acpi=off \
        -accel kvm -cpu "$qcpu" -m 128 -smp 1 -nodefaults -no-user-config -display none -no-reboot \
        -bios /usr/share/qemu/qboot.rom -device i8042 -kernel "$K" -append "$cl" \
        -drive "id=root,file=$IMG,format=raw,if=none,readonly=on" -device virtio-blk-device,drive=root
      [ -n "$disk" ] && set -- "$@" -drive "id=bench,file=$disk,format=raw,if=none,readonly=on" \
        -device virtio-blk-device,drive=bench
      # The room's entropy source, as anchor-vmm always gives one (bench.qrng=0: none).
      [ "$qrng" = 0 ] || set -- "$@" -device virtio-rng-device
      set -- "$@" -serial stdio ;;
  esac
  ARGS_FILE=/tmp/args-$v
  : > "$ARGS_FILE"
  for x in "$@"; do printf '%s\n' "$x" >> "$ARGS_FILE"; done
}
# Replaces the calling (sub)shell with "$@" followed by the arguments saved by vmm_args
# (one per line; no word splitting).
exec_saved() {
  set -f; IFS='
'
  # shellcheck disable=SC2046
  set -- "$@" $(cat "$ARGS_FILE")
  unset IFS; set +f
  exec "$@"
}
# Runs bench-run with the arguments saved by vmm_args.
bench() { (exec_saved bench-run "$@" --); }
# A JIT mark: bench-nested.sh reads QEMU's `info jit` (the TB count of the TCG translator
# that runs this host) when the line appears; the pause lets it answer before anything else
# runs, so a room's count is its translation work alone (outside the timed part).
jit_mark() { echo "bench-jit: $1 vmm=$2 run=$3"; sleep 0.3; }
run() {
  label=$1 i=$2
  jit_mark begin "$label" "$i"
  hup=$(cut -d' ' -f1 /proc/uptime)
  vmm_args "$label" "$ROOM" "" boot
  r=$(bench "$tmo" "$MARK" "/tmp/$label-$i.serial" "/tmp/$label-$i.err")
  jit_mark end "$label" "$i"
  up=$(sed -n 's/.*room base ready (uptime \([0-9.]*\) s).*/\1/p' "/tmp/$label-$i.serial" | head -n 1)
  echo "bench-result: vmm=$label run=$i $r guest_uptime_s=${up:-none} host_uptime_s=$hup"
  case "$r" in
    *"marker_ms=-1.0"*|*"timeout=1"*|*"status="[1-9]*) bad=1 ;;
    *) bad=0 ;;
  esac
  if [ "$i" = "$first" ] || [ "$bad" = 1 ] || [ "$verbose" = 1 ]; then
    tail -n "$lines" "/tmp/$label-$i.serial" | sed "s/^/bench-serial[$label#$i]: /"
    tail -n 20 "/tmp/$label-$i.err" | sed "s/^/bench-stderr[$label#$i]: /"
  fi
}
# Warm-up rounds (run=0, reported but not counted): the first nested boot after the host
# came up also pays one-off costs in the anchor host (TCG translating KVM's paths, entropy).
# Whether the host's crng was ready before the first room (the VMM waits for it otherwise).
echo "bench-init: host entropy before the first room: entropy_avail=$(cat /proc/sys/kernel/random/entropy_avail) (256: the crng is ready) at host uptime $(cut -d' ' -f1 /proc/uptime) s"
# bench.delay=S: wait S seconds before the first room (is the first room's extra time the
# host still finishing its own boot?).
delay=$(arg delay); [ -n "$delay" ] && sleep "$delay"
w=0
while [ "$w" -lt "$warm" ]; do for v in $VMMS; do run "$v" 0; done; w=$((w + 1)); done
for i in $(seq 1 "$n"); do for v in $VMMS; do run "$v" "$i"; done; done

# Idle runs: a room whose shell waits for input (stdin a FIFO held open by a writer that
# never writes); 2 s after its marker, its VMM's CPU time (user + system of all its
# threads, the vcpu's guest time included; /proc/PID/stat, 1/100 s) over 5 s.
idle=$(arg idle); [ -n "$idle" ] || idle=1
ticks() { set -- $(cut -d')' -f2 "/proc/$1/stat"); echo $((${12} + ${13})); }
if [ "$idle" -gt 0 ]; then
  IDLEROOM="$BASE anchor.shell=on"
  for i in $(seq 1 "$idle"); do
    for v in $VMMS; do
      vmm_args "$v" "$IDLEROOM" "" boot
      rm -f /tmp/idle-in; mkfifo /tmp/idle-in
      sleep 600 > /tmp/idle-in &
      w=$!
      exec_saved < /tmp/idle-in > "/tmp/idle-$v-$i.serial" 2> "/tmp/idle-$v-$i.err" &
      p=$!
      k=0
      while [ "$k" -lt 1200 ] && ! grep -q "$MARK" "/tmp/idle-$v-$i.serial"; do sleep 0.1; k=$((k + 1)); done
      sleep 2
      a=$(ticks "$p"); sleep 5; b=$(ticks "$p")
      if grep -q "$MARK" "/tmp/idle-$v-$i.serial" && [ -n "$a" ] && [ -n "$b" ]; then
        echo "bench-idle: vmm=$v run=$i ticks=$((b - a)) secs=5"
      else
        echo "bench-idle: vmm=$v run=$i broken"
        tail -n 20 "/tmp/idle-$v-$i.serial" | sed "s/^/bench-serial[idle-$v#$i]: /"
        tail -n 20 "/tmp/idle-$v-$i.err" | sed "s/^/bench-stderr[idle-$v#$i]: /"
      fi
      kill "$p" "$w" 2>/dev/null; wait "$p" "$w" 2>/dev/null
    done
  done
fi

# I/O runs: the room's shell (typed in through the console once its prompt shows) mounts
# the bench disk, runs roombench on it (sequential and random reads), through vsock
# (anchor-vmm only: both directions, to vsock-peer on the host; QEMU has no vsock without
# vhost-vsock) and over an in-room socketpair, then exits.
if [ "$io" -gt 0 ]; then
  cp /usr/lib/anchor/images/roombench.squashfs /tmp/bench.disk
  dd if=/dev/zero of=/tmp/bench.disk bs=1M seek=1 count=63 conv=notrunc 2>/dev/null
  IOROOM="$BASE anchor.shell=on anchor.privileged=1"
  [ "$verbose" = 1 ] && IOROOM=$(echo "$IOROOM" | sed 's/ quiet / printk.time=1 /')
  for v in $VMMS; do
    case "$v" in ours|before) vsock-peer "/tmp/v-$v.sock_7000" & ;; esac
    {
      # The shell's first read may be taken by its terminal query (ESC [6n): spare lines.
      echo; echo true
      echo 'for d in vda vdb vdc; do [ "$(cat /sys/block/$d/size)" = 131072 ] && D=/dev/$d; done; mkdir -p /tmp/b; mount -t squashfs -o ro $D /tmp/b; echo "roombench: disk dev=$D"'
      echo '/tmp/b/roombench seq $D 64'
      echo '/tmp/b/roombench rand $D 3'
      [ "$v" = qemu ] || { echo '/tmp/b/roombench vsock-send 7000 16'; echo '/tmp/b/roombench vsock-recv 7000 16'; }
      echo '/tmp/b/roombench loop 64'
      echo 'exit'
    } > "/tmp/io-$v.sh"
  done
  for i in $(seq 1 "$io"); do
    for v in $VMMS; do
      vmm_args "$v" "$IOROOM" /tmp/bench.disk io
      r=$(bench "$iotmo" "$MARK" "/tmp/io-$v-$i.serial" "/tmp/io-$v-$i.err" -i ':~# ' "/tmp/io-$v.sh")
      rb=$(tr -d '\r' < "/tmp/io-$v-$i.serial" | sed -n 's/^roombench: \([a-z0-9_]*\) \(.*=.*\)/\1 \2/p' |
           while read -r name rest; do for kv in $rest; do printf ' %s.%s' "$name" "$kv"; done; done)
      echo "bench-io: vmm=$v run=$i $r$rb"
      if [ "$verbose" = 1 ] || ! grep -q 'roombench: loopback' "/tmp/io-$v-$i.serial"; then
        tail -n "$lines" "/tmp/io-$v-$i.serial" | sed "s/^/bench-serial[io-$v#$i]: /"
        tail -n 20 "/tmp/io-$v-$i.err" | sed "s/^/bench-stderr[io-$v#$i]: /"
      fi
    done
  done
fi
# Network runs: the room (shell, root) fetches 16 MiB over HTTP from anchor-outside and
# makes 20 connect + one-byte echo + close round trips to it, through a fresh passt per
# run (the rooms' own options; anchor-vmm also with its strict egress rule, as in a room)
# behind each VMM. anchor-outside lives in its own network namespace, 10.77.0.2, through
# a veth pair; nothing leaves the anchor host.
netn=$(arg net); [ -n "$netn" ] || netn=1
# QEMU takes minutes to exit after a network run here (not understood yet; the figures are
# measured in the room before it): a run is cut after this many seconds.
nettmo=$(arg nettimeout); [ -n "$nettmo" ] || nettmo=240
if [ "$netn" -gt 0 ]; then
  ip link set lo up
  unshare -n /usr/bin/anchor-outside 10.77.0.2 >/dev/null 2>&1 & OUTSIDE=$!
  sleep 1
  ip link add ah0 type veth && ip link set veth0 netns "$OUTSIDE" &&
    ip addr add 10.77.0.1/24 dev ah0 && ip link set ah0 up && ip route add default via 10.77.0.2
  nsenter -t "$OUTSIDE" -n sh -c 'ip link set lo up; ip addr add 10.77.0.2/24 dev veth0; ip link set veth0 up'
  if [ ! -f /tmp/bench.disk ]; then
    cp /usr/lib/anchor/images/roombench.squashfs /tmp/bench.disk
    dd if=/dev/zero of=/tmp/bench.disk bs=1M seek=1 count=63 conv=notrunc 2>/dev/null
  fi
  NETROOM="$BASE anchor.shell=on anchor.privileged=1 anchor.net=10.0.2.15/24,10.0.2.2,10.0.2.3"
  {
    echo; echo true
    echo 'for d in vda vdb vdc; do [ "$(cat /sys/block/$d/size)" = 131072 ] && D=/dev/$d; done; mkdir -p /tmp/b; mount -t squashfs -o ro $D /tmp/b'
    echo '/tmp/b/roombench tcp-get 10.77.0.2 16'
    echo '/tmp/b/roombench tcp-connect 10.77.0.2 20'
    echo 'exit'
  } > /tmp/net.sh
  # passt cannot pivot away from the initramfs root: it runs from a bind of it, moved over
  # / in a mount namespace of its own (what anchor-jail does for rooms).
  mkdir -p /tmp/passt-root
  for i in $(seq 1 "$netn"); do
    for v in $VMMS; do
      sock=/tmp/passt-$v-$i.sock
      unshare -m sh -c "mount --make-rprivate / && mount --rbind / /tmp/passt-root && cd /tmp/passt-root && mount --move . / && exec chroot . /usr/bin/passt -f -q -1 --runas 65534:65534 --socket $sock --mtu 1500 -4 --no-map-gw -t none -u none -a 10.0.2.15 -n 24 -g 10.0.2.2 --dns-forward 10.0.2.3 --no-dhcpv6 --no-ndp --no-ra" >"/tmp/passt-$v-$i.log" 2>&1 &
      w=0; while [ ! -S "$sock" ] && [ "$w" -lt 100 ]; do sleep 0.1; w=$((w + 1)); done
      vmm_args "$v" "$NETROOM" /tmp/bench.disk boot
      if [ "$v" = qemu ]; then
        echo "-netdev" >> "$ARGS_FILE"; echo "stream,id=n0,server=off,addr.type=unix,addr.path=$sock" >> "$ARGS_FILE"
        echo "-device" >> "$ARGS_FILE"; echo "virtio-net-device,netdev=n0" >> "$ARGS_FILE"
      else
        printf '%s\n' --net-uds "$sock" --net-deny 10.77.0.1 --net-deny 127.0.0.1 >> "$ARGS_FILE"
      fi
      r=$(bench "$nettmo" "$MARK" "/tmp/net-$v-$i.serial" "/tmp/net-$v-$i.err" -i ':~# ' /tmp/net.sh)
      rb=$(tr -d '\r' < "/tmp/net-$v-$i.serial" | sed -n 's/^roombench: \([a-z0-9_]*\) \(.*=.*\)/\1 \2/p' |
           while read -r name rest; do for kv in $rest; do printf ' %s.%s' "$name" "$kv"; done; done)
      echo "bench-net: vmm=$v run=$i $r$rb"
      if [ "$verbose" = 1 ] || ! grep -q 'roombench: tcp_connect' "/tmp/net-$v-$i.serial" || ! grep -q 'roombench: tcp_get' "/tmp/net-$v-$i.serial"; then
        tail -n "$lines" "/tmp/net-$v-$i.serial" | sed "s/^/bench-serial[net-$v#$i]: /"
        tail -n 20 "/tmp/net-$v-$i.err" | sed "s/^/bench-stderr[net-$v#$i]: /"
        sed "s/^/bench-stderr[passt-$v#$i]: /" "/tmp/passt-$v-$i.log"
      fi
    done
  done
  kill "$OUTSIDE" 2>/dev/null
fi
# The anchor host's own entropy state matters: getrandom(2) blocks until its crng is ready.
dmesg | grep -i 'random:' | sed 's/^/bench-init: host dmesg: /'
echo "bench-init: done"
poweroff -f
EOF
chmod 0755 "$stage/init"
mknod -m 0600 "$stage/dev/console" c 5 1 2>/dev/null || true
mkdir -p "$(dirname "$OUT")"
cpio_stage "$stage" > "$OUT.tmp.$$"
mv "$OUT.tmp.$$" "$OUT"
echo "$key" > "$OUT.key"
printf 'mk-bench-initramfs: %s (%d bytes)\n' "$OUT" "$(stat -c %s "$OUT")" >&2
echo "$OUT"
