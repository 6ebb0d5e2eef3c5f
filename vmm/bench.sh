#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# anchor-vmm benchmarks (printed, never asserted):
#  - cold start of a trivial PVH guest: exec -> guest prints a line -> guest
#    resets via i8042 (port 0x64) -> process exit; median of N runs, ours vs
#    QEMU microvm with the same ELF (QEMU boots it through its PVH loader)
#  - time to the first serial byte and to the guest's line
#  - peak RSS (VmHWM) of ours, VMM overhead = RSS - guest RAM touched
#  - stripped static binary size
# Usage: vmm/bench.sh [N]   (N defaults to 20). Needs /dev/kvm, binutils, python3,
# qemu-system-x86_64 (the QEMU column is skipped with a message if missing).
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

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
as --64 -o "$WORK/pvh.o" vmm/tests/common/pvh_guest.S
ld -Ttext 0x100000 -e _start -static -nostdlib -o "$WORK/pvh.elf" "$WORK/pvh.o"
as --64 --defsym HANG=1 -o "$WORK/hang.o" vmm/tests/common/pvh_guest.S
ld -Ttext 0x100000 -e _start -static -nostdlib -o "$WORK/hang.elf" "$WORK/hang.o"

QEMU=""
if command -v qemu-system-x86_64 >/dev/null; then QEMU=qemu-system-x86_64; fi

python3 - "$N" "$VMM" "$WORK" "$MEM" "$QEMU" <<'PY'
import os, statistics, subprocess, sys, time, signal

n, vmm, work, mem, qemu = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
pvh, hang = f"{work}/pvh.elf", f"{work}/hang.elf"
ours = [vmm, "--kernel", pvh, "--mem-mib", mem, "--cmdline", "bench"]
theirs = [qemu, "-M", "microvm", "-accel", "kvm", "-cpu", "host,-arch-capabilities",
          "-m", mem, "-device", "i8042", "-no-reboot", "-nographic", "-nodefaults",
          "-serial", "stdio", "-kernel", pvh, "-append", "bench"]
# QEMU's own minimal microvm firmware: the default (SeaBIOS) image runs its
# CPL0 code emulated by this host's PVM KVM and takes seconds, not ms.
QBOOT = "/usr/share/qemu/qboot.rom"
theirs_default = list(theirs)
if os.path.exists(QBOOT):
    theirs += ["-bios", QBOOT]

def once(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    first = line = None
    buf = b""
    while True:
        b = p.stdout.read(1)
        if not b:
            break
        if first is None:
            first = time.perf_counter() - t0
        buf += b
        if line is None and b"PVH ok" in buf:
            line = time.perf_counter() - t0
    rc = p.wait()
    total = time.perf_counter() - t0
    if rc != 0 or line is None:
        raise SystemExit(f"bench: {cmd[0]} run failed (rc {rc}, output {buf[-200:]!r})")
    return total, first, line

def series(cmd):
    once(cmd)  # warm the page cache
    runs = [once(cmd) for _ in range(n)]
    return [statistics.median(r[i] for r in runs) for i in range(3)]

ms = lambda s: f"{s * 1000:8.2f} ms"
o = series(ours)
print(f"anchor-vmm bench: trivial PVH guest, {mem} MiB, median of {n} runs")
print(f"  ours : cold start {ms(o[0])}   first serial byte {ms(o[1])}   guest line {ms(o[2])}")
if qemu:
    q = series(theirs)
    fw = "qboot.rom" if os.path.exists(QBOOT) else "default firmware"
    print(f"  qemu : cold start {ms(q[0])}   first serial byte {ms(q[1])}   guest line {ms(q[2])}   ({fw})")
    d = once(theirs_default)
    print(f"  qemu : one run with its default microvm firmware (SeaBIOS): cold start {ms(d[0])}, "
          f"guest line {ms(d[2])} (not used for ratios)")
    print(f"  ratio ours/qemu: cold start {o[0] / q[0]:.3f} (target <= 0.3)   "
          f"guest line {o[2] / q[2]:.3f}")
else:
    print("  qemu : qemu-system-x86_64 not installed, no comparison")

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
