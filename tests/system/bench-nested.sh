#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Benchmark (printed, never asserted): time to init of the room kernel in the harness,
# anchor-vmm vs QEMU microvm, both nested (KVM) inside the anchor host that runs under
# QEMU TCG (`-M q35 -accel tcg -cpu max -m 1024 -smp 1`, AMD SVM + NPT), our host kernel.
#
# The anchor host boots a bench-only initramfs (tests/system/mk-bench-initramfs.sh) whose
# /init boots the same room (room kernel + base.squashfs, 128 MiB, 1 vCPU, `quiet`,
# `anchor.shell=off`: the agent prints `anchor-agent: room base ready`, then resets the
# room with reboot=k) N times with each VMM, alternating ours, QEMU, ours, QEMU, ...,
# after one uncounted warm-up pair (the first nested boot pays one-off costs in the host).
# QEMU inside: -M microvm,x-option-roms=off,rtc=off,acpi=off -accel kvm -cpu host
# -bios qboot.rom -device i8042 -no-reboot, virtio-blk-device (virtio-mmio) on the image.
# Clock: CLOCK_MONOTONIC of the anchor host, read by a tiny static helper that execs the
# VMM with the VMM's serial on a pipe (same helper, same pipe, for both VMMs).
# Per VMM: median/min/max of exec -> agent marker and exec -> VMM exit, ratio ours/QEMU.
#
# usage: tests/system/bench-nested.sh [N]   (N runs per VMM, default 5; env BENCH_NESTED_N)
# env:   BENCH_NESTED_TIMEOUT (whole anchor-host run, s, default 600),
#        BENCH_NESTED_QEMU_CPU (QEMU's -cpu inside, default host),
#        BENCH_NESTED_VERBOSE=1 (diagnostic: rooms boot without `quiet` and every run's room
#        console is printed; the figures then include the cost of the console output)
# Exit status: 0 when the run completed (whatever the figures), 1 when it broke.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
export ANCHOR_CACHE ANCHOR_OUT
N="${1:-${BENCH_NESTED_N:-5}}"
TIMEOUT="${BENCH_NESTED_TIMEOUT:-600}"
QCPU="${BENCH_NESTED_QEMU_CPU:-host}"
VERBOSE="${BENCH_NESTED_VERBOSE:-0}"
die() { echo "bench-nested: $*" >&2; exit 1; }
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got '$N'"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run scripts/setup.sh"
command -v python3 >/dev/null || die "python3 missing"
HOST_KERNEL="${ANCHOR_HOST_KERNEL:-$ANCHOR_OUT/host-bzImage}"
[[ -f "$HOST_KERNEL" ]] || die "$HOST_KERNEL missing: run host-kernel/build.sh (make kernels)"

INITRAMFS=$(tests/system/mk-bench-initramfs.sh) || die "cannot build the bench initramfs"
LOG="$ANCHOR_CACHE/bench/nested-bench.log"
mkdir -p "$(dirname "$LOG")"
echo "bench-nested: booting the anchor host under TCG ($N runs per VMM; serial log $LOG)" >&2
t0=$SECONDS
set +e
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 -M q35 -accel tcg -cpu max -m 1024 -smp 1 \
  -nodefaults -no-user-config -display none -no-reboot -serial stdio \
  -kernel "$HOST_KERNEL" -initrd "$INITRAMFS" \
  -append "console=ttyS0 panic=-1 printk.time=1 quiet bench.n=$N bench.qcpu=$QCPU bench.verbose=$VERBOSE" \
  </dev/null >"$LOG" 2>"$LOG.stderr"
qrc=$?
set -e
elapsed=$((SECONDS - t0))
if ((qrc == 124 || qrc == 137)); then
  tail -n 30 "$LOG" >&2
  die "the anchor host did not finish within $TIMEOUT s (log: $LOG)"
fi
((qrc == 0)) || { cat "$LOG.stderr" >&2; die "QEMU (anchor host) exited with status $qrc (log: $LOG)"; }
grep -q '^bench-init: done' "$LOG" || { tail -n 30 "$LOG" >&2; die "the bench /init did not finish (log: $LOG)"; }

python3 - "$LOG" "$N" "$elapsed" "$VERBOSE" <<'PY'
import statistics, sys

log, n, elapsed, verbose = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
text = open(log, errors="replace").read().replace("\r", "")
runs = {"ours": [], "qemu": []}
broken, warm = [], []
for line in text.splitlines():
    if not line.startswith("bench-result: "):
        continue
    f = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    vmm = f.get("vmm", "?")
    try:
        first, marker, exit_ = (float(f[k]) for k in ("first_ms", "marker_ms", "exit_ms"))
        ok = marker >= 0 and f.get("status") == "0" and f.get("timeout") == "0"
    except (KeyError, ValueError):
        ok = False
    if not ok or vmm not in runs:
        broken.append(line)
        continue
    if f.get("run") == "0":
        warm.append(f"{vmm} {marker / 1000:.2f}/{exit_ / 1000:.2f}")
        continue
    runs[vmm].append((first, marker, exit_, f.get("guest_uptime_s", "none"), f.get("host_uptime_s", "?")))
for l in text.splitlines():
    if l.startswith("bench-init: ") and l != "bench-init: done":
        print(l)
print(f"nested room boot, {n} runs per VMM alternating after a warm-up pair, anchor host under TCG "
      f"(whole run {elapsed} s); clock: anchor host CLOCK_MONOTONIC")

def stats(v):
    return statistics.median(v), min(v), max(v)

def fmt(v):
    med, lo, hi = stats(v)
    return f"median {med / 1000:6.3f} s  (min {lo / 1000:6.3f}, max {hi / 1000:6.3f})"

names = {"ours": "anchor-vmm", "qemu": "qemu microvm"}
for vmm in ("ours", "qemu"):
    r = runs[vmm]
    if not r:
        print(f"  {names[vmm]:12}: no successful run")
        continue
    ups = [x[3] for x in r]
    print(f"  {names[vmm]:12}: exec -> init marker {fmt([x[1] for x in r])}   "
          f"exec -> exit {fmt([x[2] for x in r])}   [{len(r)}/{n} ok]")
    # With `quiet` the first byte is the marker line itself; BENCH_NESTED_VERBOSE=1 makes it
    # the kernel's first console line (VMM setup + firmware + early kernel).
    print(f"  {'':12}  exec -> first serial byte {fmt([x[0] for x in r])}")
    print(f"  {'':12}  per run (marker/exit s): "
          + "  ".join(f"{x[1] / 1000:.2f}/{x[2] / 1000:.2f}" for x in r))
    print(f"  {'':12}  room kernel's own uptime at the marker: {' '.join(ups)} s; "
          f"anchor host uptime at exec: {' '.join(x[4] for x in r)} s")
if warm:
    print(f"  warm-up run (not counted), marker/exit s: {'  '.join(warm)}")
if runs["ours"] and runs["qemu"]:
    om, qm = stats([x[1] for x in runs["ours"]])[0], stats([x[1] for x in runs["qemu"]])[0]
    oe, qe = stats([x[2] for x in runs["ours"]])[0], stats([x[2] for x in runs["qemu"]])[0]
    print(f"  ratio ours/qemu (medians): exec -> init marker {om / qm:.3f}   exec -> exit {oe / qe:.3f}")
for b in broken:
    print(f"  FAILED run: {b}")
for l in text.splitlines():
    if verbose and l.startswith(("bench-serial[", "bench-stderr[")):
        print(f"  {l}")
    elif l.startswith(("bench-serial[qemu", "bench-stderr[qemu")) and not runs["qemu"]:
        print(f"  {l}")
if not runs["ours"]:
    sys.exit("bench-nested: anchor-vmm never reached the marker (see the log)")
PY
