#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# BENCH-ONLY initramfs for tests/system/bench-nested.sh: time to init of the room kernel
# nested in the anchor host, anchor-vmm vs QEMU microvm. Never the product initramfs
# (tests/system/mkinitramfs.sh builds that one) and never used by a test.
#
# usage: mk-bench-initramfs.sh [--out PATH]   (default $ANCHOR_CACHE/bench/initramfs-nested-bench.cpio)
# Prints the path of the initramfs on stdout. Cached: rebuilt only when an input changed
# (key = sha256 of this script and every file copied in, stored in PATH.key).
# Inputs: $ANCHOR_OUT/bin/anchor-vmm, $ANCHOR_OUT/guest-vmlinux, $ANCHOR_OUT/images/base.squashfs,
#         BUSYBOX (default /bin/busybox, static), qemu-system-x86_64 with every shared library
#         ldd lists, QEMU's qboot.rom (microvm firmware), gcc + static glibc (libc6-dev) for
#         the timing helper.
#
# Contents: busybox /init (below), anchor-vmm, the room kernel, base.squashfs, QEMU + its
# libraries + qboot.rom, and /usr/bin/bench-run: a small static C program that execs a VMM
# with the VMM's serial on a pipe and stamps CLOCK_MONOTONIC (ns resolution) at exec, at
# the first serial byte, at the agent's marker and at the VMM's exit. Both VMMs go through
# the same helper, so the measurement overhead is the same for both.
# The cpio is not compressed: gunzip of ~80 MB under TCG would cost more than copying it.
#
# /init, from its kernel command line: bench.n=N (runs per VMM, default 5),
# bench.qcpu=MODEL (QEMU's -cpu inside, default host), bench.timeout=S (per run, default 120),
# bench.warmup=W (uncounted warm-up pairs, reported as run=0, default 1),
# bench.verbose=1 (diagnostic: room console without `quiet`, with printk times, printed in full
# for every run).
# It prints `bench-result: vmm=ours|qemu run=I first_ms=.. marker_ms=.. exit_ms=.. status=..
# timeout=0|1 guest_uptime_s=.. host_uptime_s=..` per run, then `bench-init: done` and powers off.
set -euo pipefail
SELF=$(realpath "$0")
# shellcheck source=tests/system/initramfs-lib.sh
source "$(dirname "$SELF")/initramfs-lib.sh"
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${BUSYBOX:=/bin/busybox}"
OUT="$ANCHOR_CACHE/bench/initramfs-nested-bench.cpio"
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
QBOOT=""
for f in /usr/share/qemu/qboot.rom /usr/share/qboot/bios.bin /usr/share/seabios/qboot.rom; do
  [[ -f "$f" ]] && { QBOOT="$f"; break; }
done
[[ -n "$QBOOT" ]] || die "qboot.rom (QEMU's microvm firmware) not found: apt-get install qemu-system-data"
command -v gcc >/dev/null || die "gcc missing: apt-get install gcc libc6-dev"
mapfile -t LIBS < <(libs_of "$QEMU")
((${#LIBS[@]} > 0)) || die "ldd lists no libraries for $QEMU"

# Cache key: this script (it holds /init and the helper) and every input file.
key=$( { sha256sum "$SELF" "$INITRAMFS_LIB" "$VMM" "$KERNEL" "$IMAGE" "$BUSYBOX" "$QEMU" "$QBOOT" "${LIBS[@]}"
         gcc --version | head -n 1; } | sha256sum | cut -d' ' -f1)
if [[ -f "$OUT" && -f "$OUT.key" && "$(cat "$OUT.key")" == "$key" ]]; then
  echo "mk-bench-initramfs: $OUT up to date" >&2
  echo "$OUT"
  exit 0
fi

stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,run,usr/bin,usr/lib/anchor/kernel,usr/lib/anchor/images}
install -m 0755 "$BUSYBOX" "$stage/bin/busybox"
for a in sh mount mkdir cat sed cut ls uname poweroff sleep echo grep head tail seq dmesg; do
  ln -s busybox "$stage/bin/$a"
done
install -m 0755 "$VMM" "$stage/usr/bin/anchor-vmm"
install -m 0644 "$KERNEL" "$stage/usr/lib/anchor/kernel/vmlinux"
install -m 0644 "$IMAGE" "$stage/usr/lib/anchor/images/base.squashfs"
install -m 0755 "$QEMU" "$stage/usr/bin/qemu-system-x86_64"
for lib in "${LIBS[@]}"; do install -D -m 0755 "$lib" "$stage$lib"; done
install -D -m 0644 "$QBOOT" "$stage/usr/share/qemu/qboot.rom"

cat > "$stage/bench-run.c" <<'EOF'
/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-run: exec CMD with its stdout (the VMM's serial) on a pipe; copy the bytes to LOG;
 * stamp CLOCK_MONOTONIC at exec, first byte, end of MARKER, and exit (after waitpid).
 * usage: bench-run TIMEOUT_S MARKER LOG ERR -- CMD [ARGS...]
 * prints: first_ms=F marker_ms=M exit_ms=E status=S timeout=0|1 (ms since exec; -1 = never) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 7 || strcmp(argv[5], "--") != 0) {
    fprintf(stderr, "usage: bench-run TIMEOUT_S MARKER LOG ERR -- CMD [ARGS...]\n");
    return 2;
  }
  double timeout = atof(argv[1]);
  const char *marker = argv[2];
  size_t mlen = strlen(marker);
  if (mlen == 0 || mlen > 256) { fprintf(stderr, "bench-run: bad marker\n"); return 2; }
  int log = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int p[2];
  if (log < 0 || err < 0 || null < 0 || pipe2(p, O_CLOEXEC) != 0) { perror("bench-run"); return 3; }
  double t0 = now();
  pid_t pid = fork();
  if (pid < 0) { perror("bench-run: fork"); return 3; }
  if (pid == 0) {
    dup2(null, 0); dup2(p[1], 1); dup2(err, 2);
    execvp(argv[6], argv + 6);
    perror("bench-run: exec");
    _exit(127);
  }
  close(p[1]);
  char buf[4096], win[256 + sizeof buf];
  size_t wl = 0;
  double t_first = -1, t_marker = -1;
  int timed_out = 0;
  struct pollfd pfd = { .fd = p[0], .events = POLLIN };
  for (;;) {
    double left = t0 + timeout - now();
    if (left <= 0) { timed_out = 1; kill(pid, SIGKILL); break; }
    int r = poll(&pfd, 1, (int)(left * 1000) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { perror("bench-run: poll"); kill(pid, SIGKILL); break; }
    if (r == 0) continue;
    ssize_t n = read(p[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    double t = now();
    if (t_first < 0) t_first = t;
    if (write(log, buf, (size_t)n) < 0) { /* the log is informative only */ }
    if (t_marker < 0) {
      memcpy(win + wl, buf, (size_t)n);
      wl += (size_t)n;
      if (memmem(win, wl, marker, mlen)) t_marker = t;
      size_t keep = mlen - 1 < wl ? mlen - 1 : wl;
      memmove(win, win + wl - keep, keep);
      wl = keep;
    }
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  double t_exit = now();
  int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
#define MS(t) ((t) < 0 ? -1.0 : ((t) - t0) * 1000.0)
  printf("first_ms=%.1f marker_ms=%.1f exit_ms=%.1f status=%d timeout=%d\n",
         MS(t_first), MS(t_marker), MS(t_exit), status, timed_out);
  return 0;
}
EOF
gcc -O2 -Wall -Wextra -Werror -static -o "$stage/usr/bin/bench-run" "$stage/bench-run.c"
rm "$stage/bench-run.c"

cat > "$stage/init" <<'EOF'
#!/bin/sh
# Bench-only /init (tests/system/mk-bench-initramfs.sh): the same room, booted N times by
# anchor-vmm and by QEMU microvm, alternating, after W warm-up pairs, each timed by bench-run.
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
arg() { sed -n "s/.*bench\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
n=$(arg n); [ -n "$n" ] || n=5
qcpu=$(arg qcpu); [ -n "$qcpu" ] || qcpu=host
tmo=$(arg timeout); [ -n "$tmo" ] || tmo=120
verbose=$(arg verbose)
warm=$(arg warmup); [ -n "$warm" ] || warm=1
if [ ! -c /dev/kvm ]; then
  echo "bench-init: FAIL: no /dev/kvm in the anchor host (needs KVM_AMD and -cpu max)"
  poweroff -f
fi
K=/usr/lib/anchor/kernel/vmlinux
IMG=/usr/lib/anchor/images/base.squashfs
ROOM="console=ttyS0 quiet reboot=k root=/dev/vda ro rootfstype=squashfs init=/sbin/init anchor.room=base anchor.shell=off"
MARK="anchor-agent: room base ready"
lines=20
first=1; [ "$warm" = 0 ] || first=0
if [ "$verbose" = 1 ]; then
  # Diagnostic: full room console with timestamps (slower: each serial byte is a nested exit).
  ROOM=$(echo "$ROOM" | sed 's/ quiet / printk.time=1 /')
  lines=400
fi
echo "bench-init: room cmdline: $ROOM"
echo "bench-init: /dev/kvm present; $warm warm-up + $n runs per VMM, alternating; qemu -cpu $qcpu; $(grep -m1 'model name' /proc/cpuinfo)"
echo "bench-init: $(qemu-system-x86_64 --version 2>&1 | head -n 1)"
run() {
  label=$1 i=$2; shift 2
  hup=$(cut -d' ' -f1 /proc/uptime)
  r=$(bench-run "$tmo" "$MARK" "/tmp/$label-$i.serial" "/tmp/$label-$i.err" -- "$@")
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
vmms() {
  i=$1
  run ours "$i" anchor-vmm --kernel "$K" --disk "$IMG,ro" --cmdline "$ROOM" --mem-mib 128 --vcpus 1
  run qemu "$i" qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=off,acpi=off \
    -accel kvm -cpu "$qcpu" -m 128 -smp 1 -nodefaults -no-user-config -display none -no-reboot \
    -bios /usr/share/qemu/qboot.rom -device i8042 -kernel "$K" -append "$ROOM" \
    -drive "id=root,file=$IMG,format=raw,if=none,readonly=on" -device virtio-blk-device,drive=root \
    -serial stdio
}
# Warm-up pairs (run=0, reported but not counted): the first nested boot after the host
# came up also pays one-off costs in the anchor host (TCG translating KVM's paths, entropy).
w=0
while [ "$w" -lt "$warm" ]; do vmms 0; w=$((w + 1)); done
for i in $(seq 1 "$n"); do vmms "$i"; done
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
