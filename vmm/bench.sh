#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# anchor-vmm cold-start benchmark (printed, never asserted), on this machine's KVM with a
# trivial PVH guest (tests/common/pvh_guest.S: print a line, reset through the i8042):
#  - the whole cycle: exec until every process the VMM started is gone (the harness is a
#    child subreaper and reaps them all, so helpers a VMM forks are counted), and the VMM's
#    own exit; the time to the guest's first serial byte and to its line;
#  - peers in the same run, interleaved run by run: QEMU microvm with qboot
#    (-bios /usr/share/qemu/qboot.rom; its default SeaBIOS takes seconds here, shown once),
#    Firecracker when FIRECRACKER=PATH (or $ANCHOR_CACHE/firecracker/firecracker) exists
#    (vmm/bench-firecracker.sh builds it), and an earlier anchor-vmm build as "before" when
#    BENCH_VMM_BEFORE=PATH;
#  - peak RSS (VmHWM) of ours, VMM overhead = RSS - guest RAM touched, static binary size.
# Usage: vmm/bench.sh [N]   (N runs per VMM, default 20). Needs /dev/kvm, binutils, python3;
# qemu-system-x86_64 (the QEMU column is skipped with a message if missing).
# BENCH_RT=1: run the harness and every VMM it starts (ours and the peers alike) at
# SCHED_FIFO priority 10 (chrt), so other users of a loaded machine do not preempt them:
# a stand-in for a quiet machine. Kernel workers (SRCU grace periods, ...) keep their
# normal priority. Without it the figures include the machine's load.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
MEM=128
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${CARGO_TARGET_DIR:=$ANCHOR_CACHE/target-vmm}"
export CARGO_TARGET_DIR
TARGET=x86_64-unknown-linux-gnu

[[ -r /dev/kvm && -w /dev/kvm ]] || { echo "vmm/bench.sh: needs read/write /dev/kvm" >&2; exit 1; }
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --target "$TARGET" -p anchor-vmm -q
VMM="$CARGO_TARGET_DIR/$TARGET/release/anchor-vmm"
BEFORE="${BENCH_VMM_BEFORE:-}"
FC="${FIRECRACKER:-$ANCHOR_CACHE/firecracker/firecracker}"
[[ -x "$FC" ]] || FC=""

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
as --64 -o "$WORK/pvh.o" vmm/tests/common/pvh_guest.S
ld -Ttext 0x100000 -e _start -static -nostdlib -o "$WORK/pvh.elf" "$WORK/pvh.o"
as --64 --defsym HANG=1 -o "$WORK/hang.o" vmm/tests/common/pvh_guest.S
ld -Ttext 0x100000 -e _start -static -nostdlib -o "$WORK/hang.elf" "$WORK/hang.o"
cat > "$WORK/fc.json" <<EOF
{"boot-source": {"kernel_image_path": "$WORK/pvh.elf", "boot_args": "bench"},
 "drives": [], "machine-config": {"vcpu_count": 1, "mem_size_mib": $MEM}}
EOF

QEMU=""
if command -v qemu-system-x86_64 >/dev/null; then QEMU=qemu-system-x86_64; fi

RT=()
if [[ -n "${BENCH_RT:-}" ]]; then
  command -v chrt >/dev/null || { echo "vmm/bench.sh: BENCH_RT needs chrt (util-linux)" >&2; exit 1; }
  RT=(chrt -f 10)
  echo "BENCH_RT: every VMM runs at SCHED_FIFO 10 (load from other users is kept out)"
fi
"${RT[@]}" python3 - "$N" "$VMM" "$WORK" "$MEM" "$QEMU" "$FC" "$BEFORE" <<'PY'
import ctypes, os, statistics, subprocess, sys, time, signal

n, vmm, work, mem, qemu, fc, before = sys.argv[1:8]
n = int(n)
pvh, hang = f"{work}/pvh.elf", f"{work}/hang.elf"
# Child subreaper: orphans of a VMM (helper processes) are reparented to us and reaped.
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    raise SystemExit("bench: prctl(PR_SET_CHILD_SUBREAPER) failed")
QBOOT = "/usr/share/qemu/qboot.rom"
peers = [("anchor-vmm", [vmm, "--kernel", pvh, "--mem-mib", mem, "--cmdline", "bench"])]
if before:
    peers.append(("before", [before, "--kernel", pvh, "--mem-mib", mem, "--cmdline", "bench"]))
if fc:
    peers.append(("firecracker", [fc, "--no-api", "--config-file", f"{work}/fc.json", "--level", "Error"]))
qemu_cmd = None
if qemu:
    qemu_cmd = [qemu, "-M", "microvm", "-accel", "kvm", "-cpu", "host,-arch-capabilities",
                "-m", mem, "-device", "i8042", "-no-reboot", "-nographic", "-nodefaults",
                "-serial", "stdio", "-kernel", pvh, "-append", "bench"]
    if os.path.exists(QBOOT):
        peers.append(("qemu (qboot)", qemu_cmd + ["-bios", QBOOT]))

def once(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, bufsize=0)
    first = line = None
    buf = b""
    while True:
        b = p.stdout.read(4096)
        if not b:
            break
        now = time.perf_counter() - t0
        if first is None:
            first = now
        buf += b
        if line is None and b"PVH ok" in buf:
            line = now
    rc = p.wait()
    exit_ = time.perf_counter() - t0
    while True:  # every descendant the VMM left behind
        try:
            os.wait()
        except ChildProcessError:
            break
    gone = time.perf_counter() - t0
    if rc != 0 or line is None:
        raise SystemExit(f"bench: {cmd[0]} run failed (rc {rc}, output {buf[-200:]!r})")
    return first, line, exit_, gone

for _, cmd in peers:
    once(cmd)  # warm the page cache
runs = {name: [] for name, _ in peers}
for _ in range(n):
    for name, cmd in peers:
        runs[name].append(once(cmd))
med = {k: [statistics.median(r[i] for r in v) * 1000 for i in range(4)] for k, v in runs.items()}
ms = lambda x: f"{x:7.2f} ms"
print(f"anchor-vmm cold start: trivial PVH guest, {mem} MiB, median of {n} interleaved runs per VMM")
print("  whole cycle = exec until every process the VMM started is gone (subreaper)")
for name, _ in peers:
    m = med[name]
    print(f"  {name:13}: first byte {ms(m[0])}  guest line {ms(m[1])}  VMM exit {ms(m[2])}  whole cycle {ms(m[3])}")
ours = med["anchor-vmm"]
for peer, targets in (("firecracker", " (targets: whole cycle <= 0.5, first byte <= 0.8)"),
                      ("qemu (qboot)", ""), ("before", "")):
    if peer in med:
        p = med[peer]
        print(f"  ratio anchor-vmm/{peer}: whole cycle {ours[3] / p[3]:.3f}   first byte {ours[0] / p[0]:.3f}{targets}")
if not fc:
    print("  firecracker  : not measured (set FIRECRACKER=PATH; vmm/bench-firecracker.sh builds v1.16.1 from a source tree)")
if qemu_cmd is None:
    print("  qemu         : qemu-system-x86_64 not installed, no comparison")
else:
    d = once(qemu_cmd)
    print(f"  qemu, one run with its default microvm firmware (SeaBIOS): whole cycle {ms(d[3] * 1000)}, "
          f"guest line {ms(d[1] * 1000)} (not used for ratios)")

# Peak RSS: the HANG guest prints its line and spins; sample /proc once the
# line is out (setup is complete then), then kill. VmHWM is the kernel's
# high-water mark of this process's own mm.
p = subprocess.Popen([vmm, "--kernel", hang, "--mem-mib", mem], stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL, bufsize=0)
buf = b""
while b"PVH ok" not in buf:
    c = p.stdout.read(1)
    if not c:
        raise SystemExit("bench: hang guest exited early")
    buf += c
time.sleep(0.2)
status = open(f"/proc/{p.pid}/status").read()
field = lambda k: int(next(l for l in status.splitlines() if l.startswith(k)).split()[1])
hwm, rss = field("VmHWM:"), field("VmRSS:")
guest_rss = 0
cur_size = None
for l in open(f"/proc/{p.pid}/smaps"):
    parts = l.split()
    if parts and parts[0] == "Size:":
        cur_size = int(parts[1])
    elif parts and parts[0] == "Rss:" and cur_size == int(mem) * 1024:
        guest_rss += int(parts[1])
p.send_signal(signal.SIGKILL)
p.wait()
print(f"  peak RSS (VmHWM) {hwm} KiB = {hwm / 1024:.2f} MiB (target <= 2 MiB)")
print(f"  VMM overhead: RSS {rss} KiB - guest RAM touched {guest_rss} KiB = {rss - guest_rss} KiB")
size = os.path.getsize(vmm)
print(f"  stripped static binary {size} bytes = {size / 1048576:.2f} MiB (target <= 2 MiB)")
PY
