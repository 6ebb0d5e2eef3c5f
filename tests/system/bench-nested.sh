#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Benchmark (printed, never asserted): rooms nested (KVM) inside the anchor host that runs
# under QEMU TCG (`-M q35 -accel tcg -cpu max -m 1024 -smp 1`, AMD SVM + NPT), our host
# kernel; anchor-vmm vs QEMU microvm (and an earlier anchor-vmm build when
# BENCH_VMM_BEFORE=PATH is given, as "before").
#
# The anchor host boots a bench-only initramfs (tests/system/mk-bench-initramfs.sh):
# - boot runs: the same room (room kernel + base.squashfs, 128 MiB, 1 vCPU, `quiet`,
#   `anchor.shell=off`: the agent prints `anchor-agent: room base ready`, then resets the
#   room with reboot=k) N times with each VMM, alternating, after one uncounted warm-up
#   round (the first nested boot pays one-off costs in the host: it is reported on its
#   own, "first room after host boot", against the later rooms, with the host's entropy
#   state before it and any time its VMM waited for the host's pool). Per VMM: exec ->
#   agent marker, exec -> VMM exit, exec -> every process the VMM started gone, the room
#   kernel's own uptime at the marker. Per room also the translation blocks TCG made for it
#   (QEMU's `info jit` at marks around the room): the first room after a boot translates
#   the host's KVM paths and its VMM's code, which later rooms find translated (a cost
#   of the emulated machine: hardware has no translator).
# - idle runs: a room whose shell waits for input, per VMM: its VMM's CPU time (all its
#   threads, the guest's time included) over 5 s, 2 s after its marker (what an idle room
#   costs its host: the room kernel's timer ticks, each a VM exit, and the VMM's wake-ups).
# - I/O runs: the room's shell runs roombench (tests/system/bench-tools/roombench.c) on a
#   64 MiB bench disk: sequential 1 MiB O_DIRECT reads (MiB/s), 4 KiB O_DIRECT random reads
#   at queue depth 1 (IOPS), vsock transfers room -> host and host -> room (anchor-vmm's
#   hybrid vsock to a Unix socket; QEMU has no vsock here: vhost-vsock is not in the host
#   kernel) and, as their ceiling, the same bytes over an in-room AF_UNIX socketpair; and,
#   for anchor-vmm builds with --exit-stats, KVM's exit counters sampled around each
#   transfer: VM exits per MiB read.
# - network runs: the room fetches 16 MiB over HTTP (MiB/s) and makes 20 TCP connect +
#   one-byte echo + close round trips (ms) to anchor-outside in its own network namespace
#   of the anchor host, through a fresh passt per run behind each VMM (anchor-vmm
#   --net-uds with the rooms' egress rule; QEMU -netdev stream + virtio-net-device, its
#   defaults); the same passt options as rooms get (jail/src/net.rs).
# QEMU inside: -M microvm,x-option-roms=off,rtc=off,acpi=off -accel kvm -cpu host
# -bios qboot.rom -device i8042 -no-reboot, virtio-blk-device (virtio-mmio) disks and a
# virtio-rng-device: the same virtual hardware anchor-vmm gives the room (every room gets
# an entropy source; without one QEMU's room ends its boot with the crng not initialised,
# and the guest skips the rng's probe and first reads that ours pays for).
# Clock: CLOCK_MONOTONIC of the anchor host (bench-run) and of the room (roombench).
#
# usage: tests/system/bench-nested.sh [N]   (N boot runs per VMM, default 5; env BENCH_NESTED_N)
# env:   BENCH_NESTED_IO (I/O runs per VMM, default 2; 0 = none),
#        BENCH_NESTED_IDLE (idle runs per VMM, default 1; 0 = none),
#        BENCH_NESTED_NET (network runs per VMM, default 1; 0 = none; each may take up to
#        240 s: QEMU's exit after a network run is slow here),
#        BENCH_NESTED_TIMEOUT (whole anchor-host run, s, default 2400 + 600 per network run),
#        BENCH_NESTED_QEMU_CPU (QEMU's -cpu inside, default host),
#        BENCH_NESTED_QEMU_RNG (1 = QEMU's room gets a virtio-rng like ours, the default;
#        0 = none, as this bench did before 2026-12-01),
#        BENCH_VMM_BEFORE (another anchor-vmm binary to measure as "before"),
#        BENCH_NESTED_VMMS (which VMMs and in which order, e.g. qemu,ours: the first one
#        boots the first room after the host boot; default ours[,before],qemu),
#        BENCH_NESTED_VERBOSE=1 (diagnostic: rooms boot without `quiet` and every run's room
#        console is printed; the figures then include the cost of the console output)
# Exit status: 0 when the run completed (whatever the figures), 1 when it broke.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
export ANCHOR_CACHE ANCHOR_OUT
N="${1:-${BENCH_NESTED_N:-5}}"
IO="${BENCH_NESTED_IO:-2}"
IDLE="${BENCH_NESTED_IDLE:-1}"
NET="${BENCH_NESTED_NET:-1}"
TIMEOUT="${BENCH_NESTED_TIMEOUT:-$((2400 + 600 * ${BENCH_NESTED_NET:-1}))}"
QCPU="${BENCH_NESTED_QEMU_CPU:-host}"
QRNG="${BENCH_NESTED_QEMU_RNG:-1}"
VERBOSE="${BENCH_NESTED_VERBOSE:-0}"
VMMS="${BENCH_NESTED_VMMS:-}"
die() { echo "bench-nested: $*" >&2; exit 1; }
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got '$N'"
[[ "$VMMS" =~ ^[a-z,]*$ ]] || die "BENCH_NESTED_VMMS must be a comma-separated list of ours, before, qemu, got '$VMMS'"
[[ "$IO" =~ ^[0-9]+$ ]] || die "BENCH_NESTED_IO must be a number, got '$IO'"
[[ "$QRNG" == 0 || "$QRNG" == 1 ]] || die "BENCH_NESTED_QEMU_RNG=$QRNG: expected 0 or 1"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run scripts/setup.sh"
command -v python3 >/dev/null || die "python3 missing"
HOST_KERNEL="${ANCHOR_HOST_KERNEL:-$ANCHOR_OUT/host-bzImage}"
[[ -f "$HOST_KERNEL" ]] || die "$HOST_KERNEL missing: run host-kernel/build.sh (make kernels)"

INITRAMFS=$(tests/system/mk-bench-initramfs.sh) || die "cannot build the bench initramfs"
LOG="$ANCHOR_OUT/bench/nested-bench.log"
mkdir -p "$(dirname "$LOG")"
echo "bench-nested: booting the anchor host under TCG ($N runs per VMM; serial log $LOG)" >&2
# TCG's translation work per room: a watcher answers each `bench-jit:` mark of the serial
# log with the translator's TB count from QEMU's monitor (`info jit`), into $LOG.jit.
MON_DIR=$(mktemp -d /tmp/anchor-bench-mon.XXXXXX)
trap 'rm -rf "$MON_DIR"' EXIT
: >"$LOG"
: >"$LOG.jit"
python3 - "$MON_DIR/monitor.sock" "$LOG" "$LOG.jit" <<'PY' &
import re, select, socket, sys, time
sock_path, log, out = sys.argv[1:4]
s = None
for _ in range(600):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock_path)
        break
    except OSError:
        s = None
        time.sleep(0.05)
if s is None:
    sys.exit(0)
buf = b""
def reply():
    global buf
    while b"(qemu)" not in buf:
        d = s.recv(65536)
        if not d:
            raise EOFError
        buf += d
    r, _, buf = buf.partition(b"(qemu)")
    return r.decode(errors="replace")
# The log is followed, not re-read: only what QEMU appended since the last turn.
partial = ""
with open(out, "w") as o, open(log, errors="replace") as f:
    try:
        reply()
        while True:
            partial += f.read().replace("\r", "")
            *lines, partial = partial.split("\n")
            for l in lines:
                if l.startswith("bench-jit: "):
                    s.sendall(b"info jit\n")
                    m = re.search(r"TB count\s+(\d+)", reply())
                    o.write(f"{l} tb={m.group(1) if m else '?'}\n")
                    o.flush()
            # Readable while idle = QEMU closed the monitor (it exited).
            if select.select([s], [], [], 0.02)[0] and not s.recv(65536):
                break
    except (EOFError, OSError):
        pass
PY
t0=$SECONDS
set +e
# BENCH_NESTED_QEMU_EXTRA: more QEMU options for the anchor host (e.g. -mem-prealloc).
# shellcheck disable=SC2086
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 -M q35 -accel tcg -cpu max -m 1024 -smp 1 ${BENCH_NESTED_QEMU_EXTRA:-} \
  -nodefaults -no-user-config -display none -no-reboot -serial stdio \
  -monitor "unix:$MON_DIR/monitor.sock,server=on,wait=off" \
  -kernel "$HOST_KERNEL" -initrd "$INITRAMFS" \
  -append "$(< tests/system/emulated-x86_64.cmdline) quiet bench.n=$N bench.io=$IO bench.idle=$IDLE bench.net=$NET bench.qcpu=$QCPU bench.qrng=$QRNG bench.verbose=$VERBOSE${VMMS:+ bench.vmms=$VMMS}${BENCH_NESTED_DELAY:+ bench.delay=$BENCH_NESTED_DELAY}" \
  </dev/null >"$LOG" 2>"$LOG.stderr"
qrc=$?
wait
set -e
elapsed=$((SECONDS - t0))
# A run that broke still prints what it measured before it broke, then fails.
broke=""
if ((qrc == 124 || qrc == 137)); then
  tail -n 30 "$LOG" >&2
  broke="the anchor host did not finish within $TIMEOUT s (log: $LOG)"
elif ((qrc != 0)); then
  cat "$LOG.stderr" >&2
  broke="QEMU (anchor host) exited with status $qrc (log: $LOG)"
elif ! grep -q '^bench-init: done' "$LOG"; then
  tail -n 30 "$LOG" >&2
  broke="the bench /init did not finish (log: $LOG)"
fi

python3 - "$LOG" "$N" "$elapsed" "$VERBOSE" "$LOG.jit" <<'PY'
import statistics, sys

log, n, elapsed, verbose = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
# TCG's TB count at each room's begin/end mark: the code the translator had to translate
# for that room (the emulated host's own code once per boot, the room's every time).
tbs = {}
for line in open(sys.argv[5], errors="replace"):
    f = dict(kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)
    if f.get("tb", "?").isdigit():
        tbs.setdefault((f.get("vmm"), f.get("run")), {})[line.split()[1]] = int(f["tb"])
def translated(vmm, run):
    t = tbs.get((vmm, run), {})
    return t["end"] - t["begin"] if "begin" in t and "end" in t else None
text = open(log, errors="replace").read().replace("\r", "")
names = {"ours": "anchor-vmm", "before": "anchor-vmm before", "qemu": "qemu microvm"}
order = [v for v in ("ours", "before", "qemu")]
runs = {v: [] for v in order}
io = {v: [] for v in order}
idle = {v: [] for v in order}
net = {v: [] for v in order}
broken, warm = [], {}

def fields(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)

for line in text.splitlines():
    if line.startswith("bench-idle: "):
        f = fields(line)
        if f.get("vmm") in idle:
            idle[f["vmm"]].append(f)
        continue
    if line.startswith("bench-io: "):
        f = fields(line)
        if f.get("vmm") in io:
            io[f["vmm"]].append(f)
        continue
    if line.startswith("bench-net: "):
        f = fields(line)
        if f.get("vmm") in net:
            net[f["vmm"]].append(f)
        continue
    if not line.startswith("bench-result: "):
        continue
    f = fields(line)
    vmm = f.get("vmm", "?")
    try:
        first, marker, exit_, gone = (float(f[k]) for k in ("first_ms", "marker_ms", "exit_ms", "gone_ms"))
        ok = marker >= 0 and f.get("status") == "0" and f.get("timeout") == "0"
    except (KeyError, ValueError):
        ok = False
    if not ok or vmm not in runs:
        broken.append(line)
        continue
    rec = (first, marker, exit_, gone, f.get("guest_uptime_s", "none"), f.get("host_uptime_s", "?"),
           {k[5:]: float(v) for k, v in f.items() if k.startswith("boot.")})
    if f.get("run") == "0":
        warm[vmm] = rec
        continue
    runs[vmm].append(rec)
order = [v for v in order if runs[v] or io[v] or net[v] or idle[v] or v in warm]
for l in text.splitlines():
    if l.startswith("bench-init: ") and l != "bench-init: done":
        print(l)
print(f"nested rooms, anchor host under TCG (whole run {elapsed} s); clock: anchor host CLOCK_MONOTONIC")

def med(v):
    return statistics.median(v) if v else float("nan")

def fmt(v):
    return f"median {med(v) / 1000:6.3f} s  (min {min(v) / 1000:6.3f}, max {max(v) / 1000:6.3f})"

print(f"boot: {n} runs per VMM, alternating, after a warm-up round")
for vmm in order:
    r = runs[vmm]
    if not r:
        print(f"  {names[vmm]:17}: no successful run")
        continue
    ups = [x[4] for x in r]
    print(f"  {names[vmm]:17}: exec -> agent marker {fmt([x[1] for x in r])}   [{len(r)}/{n} ok]")
    print(f"  {'':17}  exec -> VMM exit {fmt([x[2] for x in r])}")
    print(f"  {'':17}  exec -> all its processes gone {fmt([x[3] for x in r])}")
    print(f"  {'':17}  exec -> first serial byte {fmt([x[0] for x in r])}")
    up = [float(u) for u in ups if u != "none"]
    print(f"  {'':17}  room kernel's own uptime at the marker: median {med(up):.3f} s ({' '.join(ups)})")
    st = [x[6] for x in r if x[6]]
    if st:
        keys = ("exits", "io_exits", "mmio_exits", "halt_exits", "irq_injections")
        print(f"  {'':17}  KVM counters at the marker (medians): " + "  ".join(
            f"{k}={statistics.median(s.get(k, 0) for s in st):.0f}" for k in keys))
# The first room after the anchor host booted (the warm-up round, run 0) against the later
# rooms of the same VMM: one-off costs of a fresh host (entropy, first nested VM) show here.
if warm:
    print("first room after host boot vs later rooms (exec -> agent marker):")
for vmm in order:
    if vmm not in warm:
        continue
    w, r = warm[vmm], runs[vmm]
    later = med([x[1] for x in r]) if r else float("nan")
    waited = [l.split("waited ", 1)[1].split(" ms", 1)[0] for l in text.splitlines()
              if l.startswith(f"bench-stderr[{vmm}#0]: ") and "entropy pool was not initialised: waited " in l]
    head = f"  {names[vmm]:17}: first room after boot {w[1] / 1000:6.3f} s"
    if r:
        head += f"   later rooms (median) {later / 1000:6.3f} s   first / later {w[1] / later:.2f}"
    print(head)
    print(f"  {'':17}  first room: exec -> first serial byte {w[0] / 1000:.3f} s (later median "
          f"{med([x[0] for x in r]) / 1000:.3f} s), room uptime at the marker {w[4]} s, host uptime at exec {w[5]} s"
          + (f", waited {waited[0]} ms for the host entropy pool" if waited else ""))
    first_tb = translated(vmm, "0")
    later_tb = [t for t in (translated(vmm, str(i)) for i in range(1, n + 1)) if t is not None]
    if first_tb is not None and later_tb:
        lt = statistics.median(later_tb)
        print(f"  {'':17}  TCG translation blocks made for the room (QEMU `info jit`): first room {first_tb}, "
              f"later rooms median {lt:.0f} ({first_tb - lt:+.0f}: code of the emulated host run for the first time)")
base = "qemu" if runs["qemu"] else None
if base:
    qm = med([x[1] for x in runs["qemu"]])
    qu = med([float(x[4]) for x in runs["qemu"] if x[4] != "none"])
    qg = med([x[3] for x in runs["qemu"]])
    for vmm in order:
        if vmm == "qemu" or not runs[vmm]:
            continue
        m = med([x[1] for x in runs[vmm]])
        u = med([float(x[4]) for x in runs[vmm] if x[4] != "none"])
        g = med([x[3] for x in runs[vmm]])
        print(f"  ratio {names[vmm]}/qemu (medians): exec -> marker {m / qm:.3f}   room uptime at marker {u / qu:.3f}"
              f"   exec -> all gone {g / qg:.3f}")

def num(f, k):
    try:
        return float(f[k])
    except (KeyError, ValueError):
        return None

def per(f, mark, stat, div):
    a, b = num(f, f"{mark}-start.{stat}"), num(f, f"{mark}-end.{stat}")
    return None if a is None or b is None or not div else (b - a) / div

def medf(vals, spec):
    v = [x for x in vals if x is not None]
    return format(statistics.median(v), spec) if v else "n/a"

if any(idle.values()):
    print("idle room (its shell waiting for input), 2 s after its marker: its VMM's CPU time over 5 s")
    cpu = {v: [num(f, "ticks") for f in idle[v]] for v in order}
    for vmm in order:
        if not idle[vmm]:
            continue
        ok = sum(1 for x in cpu[vmm] if x is not None)
        print(f"  {names[vmm]:17s}: {medf(cpu[vmm], '.0f')}/100 s of CPU in 5 s (median; runs: "
              f"{' '.join(f.get('ticks', 'broken') for f in idle[vmm])})   [{ok}/{len(idle[vmm])} ok]")

if any(io.values()):
    print("I/O in the room (roombench), medians over the runs:")
    for vmm in order:
        rs = io[vmm]
        if not rs:
            continue
        seq = [num(f, "seq_read.mib_per_s") for f in rs]
        rnd = [num(f, "rand_read_4k.iops") for f in rs]
        r2h = [num(f, "vsock_room_to_host.mib_per_s") for f in rs]
        h2r = [num(f, "vsock_host_to_room.mib_per_s") for f in rs]
        lo = [num(f, "loopback.mib_per_s") for f in rs]
        mib = [num(f, "seq_read.mib") for f in rs]
        ios = [num(f, "rand_read_4k.ios") for f in rs]
        print(f"  {names[vmm]:17}: disk seq read {medf(seq, '.1f')} MiB/s   4 KiB random read {medf(rnd, '.0f')} IOPS"
              f"   [{sum(1 for x in seq if x)}/{len(rs)} ok]")
        if any(r2h) or any(h2r):
            l = [x for x in lo if x]
            ceil = statistics.median(l) if l else None
            def vs(v):
                m = [x for x in v if x]
                if not m:
                    return "n/a"
                s = f"{statistics.median(m):.1f} MiB/s"
                return s + (f" ({statistics.median(m) / ceil:.3f} of the ceiling)" if ceil else "")
            print(f"  {'':17}  vsock room -> host {vs(r2h)}   host -> room {vs(h2r)}   "
                  f"in-room loopback (ceiling) {medf(lo, '.1f')} MiB/s")
        else:
            print(f"  {'':17}  in-room loopback {medf(lo, '.1f')} MiB/s (no vsock)")
        ex = [per(f, "seq", "exits", m) for f, m in zip(rs, mib)]
        if any(x is not None for x in ex):
            mm = [per(f, "seq", "mmio_exits", m) for f, m in zip(rs, mib)]
            hx = [per(f, "seq", "halt_exits", m) for f, m in zip(rs, mib)]
            ri = [per(f, "rand", "exits", k) for f, k in zip(rs, ios)]
            print(f"  {'':17}  VM exits per MiB read (sequential): {medf(ex, '.1f')} "
                  f"(to the VMM: {medf(mm, '.1f')}; halts: {medf(hx, '.1f')}); per 4 KiB random read: {medf(ri, '.2f')}")
        else:
            print(f"  {'':17}  VM exits: not available (this build has no --exit-stats)")
    sq = {v: [num(f, "seq_read.mib_per_s") for f in io[v]] for v in order}
    rn = {v: [num(f, "rand_read_4k.iops") for f in io[v]] for v in order}
    if io.get("qemu"):
        for v in order:
            if v == "qemu" or not io[v]:
                continue
            try:
                a = statistics.median([x for x in sq[v] if x]) / statistics.median([x for x in sq["qemu"] if x])
                b = statistics.median([x for x in rn[v] if x]) / statistics.median([x for x in rn["qemu"] if x])
                print(f"  ratio {names[v]}/qemu: disk seq read {a:.3f}   4 KiB random read IOPS {b:.3f}")
            except (statistics.StatisticsError, ZeroDivisionError):
                pass
if any(net.values()):
    print("network in the room (roombench, through passt to anchor-outside in its own netns), medians:")
    tp = {v: [num(f, "tcp_get.mib_per_s") for f in net[v]] for v in order}
    lat = {v: [num(f, "tcp_connect.median_ms") for f in net[v]] for v in order}
    for vmm in order:
        if not net[vmm]:
            continue
        ok = sum(1 for x in lat[vmm] if x is not None)
        cut = sum(1 for f in net[vmm] if f.get("timeout") == "1")
        print(f"  {names[vmm]:17}: TCP download {medf(tp[vmm], '.1f')} MiB/s   connect + 1-byte echo + close "
              f"{medf(lat[vmm], '.2f')} ms (median of 20 per run)   [{ok}/{len(net[vmm])} ok"
              + (f", {cut} cut at the run timeout after measuring" if cut else "") + "]")
    if net.get("qemu"):
        for v in order:
            if v == "qemu" or not net[v]:
                continue
            try:
                a = statistics.median([x for x in tp[v] if x]) / statistics.median([x for x in tp["qemu"] if x])
                b = statistics.median([x for x in lat[v] if x]) / statistics.median([x for x in lat["qemu"] if x])
                print(f"  ratio {names[v]}/qemu: TCP download {a:.3f}   connect latency {b:.3f}")
            except (statistics.StatisticsError, ZeroDivisionError):
                pass
for b in broken:
    print(f"  FAILED run: {b}")
for l in text.splitlines():
    if verbose and l.startswith(("bench-serial[", "bench-stderr[")):
        print(f"  {l}")
    elif l.startswith(("bench-serial[io", "bench-stderr[io", "bench-serial[net", "bench-stderr[net", "bench-stderr[passt")):
        print(f"  {l}")
if not runs["ours"]:
    sys.exit("bench-nested: anchor-vmm never reached the marker (see the log)")
PY
[[ -z "$broke" ]] || die "$broke"
