#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Benchmark (printed, never asserted) of the arm64 anchor host: qemu-system-aarch64
# -M virt,virtualization=on,gic-version=3 -cpu max,pauth-impdef=on -accel tcg -m 1024 -smp 1
# with our arm64 host kernel.
#  1. bay0 ready: the kernel's exec of /init -> `bay0: ready` (printk clock) and QEMU start
#     -> `bay0: ready` (wall clock), product initramfs, no room.
#  2. room start -> agent ready, nested KVM, with the host KVM in VHE mode and in protected
#     mode (kvm-arm.mode=protected): the arm64 room (room Image + base image, 128 MiB,
#     1 vcpu, quiet) booted N times by anchor-vmm and by QEMU's own `-M virt` inside the
#     same host, alternating after an uncounted warm-up pair (mk-arm64-bench-initramfs.sh;
#     clock: the anchor host's CLOCK_MONOTONIC, same helper for both VMMs).
#
# usage: tests/system/bench-arm64.sh [N]   (N runs per VMM and mode, default 5; env BENCH_ARM64_N)
# env:   BENCH_ARM64_TIMEOUT (each anchor-host run, s, default 900)
# Exit status: 0 when every run completed (whatever the figures), 1 when one broke.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
export ANCHOR_CACHE ANCHOR_OUT
N="${1:-${BENCH_ARM64_N:-5}}"
TIMEOUT="${BENCH_ARM64_TIMEOUT:-900}"
die() { echo "bench-arm64: $*" >&2; exit 1; }
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got '$N'"
command -v qemu-system-aarch64 >/dev/null || die "qemu-system-aarch64 missing: run scripts/setup.sh"
KERNEL="${ANCHOR_ARM64_HOST_KERNEL:-$ANCHOR_OUT/aarch64/host-Image}"
PRODUCT="${ANCHOR_ARM64_INITRAMFS:-$ANCHOR_OUT/aarch64/initramfs.cpio.gz}"
[[ -f "$KERNEL" && -f "$PRODUCT" ]] || die "$KERNEL or $PRODUCT missing: make arm64"
LOGDIR="$ANCHOR_CACHE/bench/arm64"
mkdir -p "$LOGDIR"
QEMU_HOST=(qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max,pauth-impdef=on
  -accel tcg -m 1024 -smp 1 -nodefaults -no-user-config -display none -no-reboot -serial stdio
  -kernel "$KERNEL")

# 1. bay0 ready (3 boots; bay0 alone, powered off through QMP-free means: the run is killed).
echo "bench-arm64: bay0 ready time (3 boots of the product initramfs, no room)"
for i in 1 2 3; do
  log="$LOGDIR/bay0-$i.log"
  t0=$(date +%s.%N)
  timeout 120 "${QEMU_HOST[@]}" -initrd "$PRODUCT" -append "console=ttyAMA0 panic=-1 printk.time=1" \
    </dev/null >"$log" 2>&1 &
  q=$!
  tw=""
  for _ in $(seq 1 1200); do
    if grep -q 'bay0: ready' "$log"; then tw=$(echo "$(date +%s.%N) - $t0" | bc); break; fi
    sleep 0.1
  done
  kill "$q" 2>/dev/null; wait "$q" 2>/dev/null || true
  python3 - "$log" "${tw:-none}" "$i" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
def stamp(pat):
    m = re.search(r"\[\s*([0-9.]+)\][^\n]*" + pat, text)
    return float(m.group(1)) if m else None
init, ready = stamp(r"Run /init as init process"), stamp(r"bay0: ready")
if init is None or ready is None:
    print(f"  boot {sys.argv[3]}: bay0 did not report ready (log {sys.argv[1]})")
else:
    print(f"  boot {sys.argv[3]}: kernel exec /init -> bay0: ready {1000 * (ready - init):.1f} ms "
          f"(kernel clock {ready:.2f} s); QEMU start -> bay0: ready {sys.argv[2]} s wall (TCG)")
PY
done

# 2. Room boots, VHE and protected mode.
INITRAMFS=$(tests/system/mk-arm64-bench-initramfs.sh) || die "cannot build the arm64 bench initramfs"
rc=0
for mode in vhe protected; do
  extra=""
  [[ $mode == protected ]] && extra="kvm-arm.mode=protected"
  log="$LOGDIR/rooms-$mode.log"
  echo "bench-arm64: room boots, host KVM $mode ($N runs per VMM; serial log $log)"
  t0=$SECONDS
  set +e
  timeout --kill-after=10 "$TIMEOUT" "${QEMU_HOST[@]}" -initrd "$INITRAMFS" \
    -append "console=ttyAMA0 panic=-1 printk.time=1 $extra bench.n=$N" </dev/null >"$log" 2>"$log.stderr"
  qrc=$?
  set -e
  if ((qrc != 0)) || ! grep -q '^bench-init: done' "$log"; then
    tail -n 30 "$log" >&2
    echo "bench-arm64: the $mode run broke (QEMU status $qrc, log $log)" >&2
    rc=1
    continue
  fi
  python3 - "$log" "$N" "$((SECONDS - t0))" "$mode" <<'PY' || rc=1
import re, statistics, sys
log, n, elapsed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
text = open(log, errors="replace").read().replace("\r", "")
kvm = re.search(r"kvm \[\d+\]: ([^\n]*mode initialized successfully)", text)
print(f"  host KVM: {kvm.group(1) if kvm else 'mode line not found'}; whole run {elapsed} s")
for l in text.splitlines():
    if l.startswith("bench-init: ") and l != "bench-init: done":
        print("  " + l)
runs = {"ours": [], "qemu": []}
broken = []
for line in text.splitlines():
    if not line.startswith("bench-result: "):
        continue
    f = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    try:
        marker, exit_ = float(f["marker_ms"]), float(f["exit_ms"])
        ok = marker >= 0 and f.get("status") == "0" and f.get("timeout") == "0"
    except (KeyError, ValueError):
        ok = False
    if not ok:
        broken.append(line)
    elif f.get("run") != "0" and f.get("vmm") in runs:
        runs[f["vmm"]].append((marker, exit_))
names = {"ours": "anchor-vmm", "qemu": "qemu -M virt"}
for vmm, r in runs.items():
    if not r:
        print(f"  {names[vmm]:12}: no successful run")
        continue
    m = [x[0] for x in r]
    e = [x[1] for x in r]
    print(f"  {names[vmm]:12}: start -> agent ready median {statistics.median(m) / 1000:6.3f} s "
          f"(min {min(m) / 1000:.3f}, max {max(m) / 1000:.3f}); start -> exit median "
          f"{statistics.median(e) / 1000:6.3f} s  [{len(r)}/{n} ok]")
if runs["ours"] and runs["qemu"]:
    o = statistics.median([x[0] for x in runs["ours"]])
    q = statistics.median([x[0] for x in runs["qemu"]])
    print(f"  ratio anchor-vmm/qemu (medians, start -> agent ready): {o / q:.3f}")
for b in broken:
    print(f"  FAILED run: {b}")
for l in text.splitlines():
    if l.startswith("bench-stderr[ours#0]: anchor-vmm: aarch64 VM:"):
        print("  room VM: " + l.split(": ", 2)[2])
if broken or not runs["ours"]:
    sys.exit(1)
PY
done
exit "$rc"
