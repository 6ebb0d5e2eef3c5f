#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Boots the anchor host (host kernel + initramfs with bay0 as /init) under QEMU TCG.
#
# usage: run-qemu.sh --interactive [-- QEMU_ARGS...]
#          serial console on this terminal; Ctrl-A X quits QEMU, Ctrl-A C toggles the
#          QEMU monitor (type `system_powerdown` there to press the power button).
#        run-qemu.sh --until PATTERN --log FILE [--timeout SECS] [-- QEMU_ARGS...]
#          headless: boot, wait until PATTERN shows on serial (logged to FILE), stop
#          QEMU; exit 0 if seen, 1 if not (used by bay0/bench.sh).
# env: ANCHOR_HOST_KERNEL (default $ANCHOR_OUT/host-bzImage), ANCHOR_INITRAMFS
#      (default $ANCHOR_OUT/initramfs.cpio.gz), ANCHOR_APPEND (extra kernel arguments),
#      ANCHOR_MEM (the anchor host's memory in MiB, default 1024).
set -euo pipefail
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
KERNEL="${ANCHOR_HOST_KERNEL:-$ANCHOR_OUT/host-bzImage}"
INITRAMFS="${ANCHOR_INITRAMFS:-$ANCHOR_OUT/initramfs.cpio.gz}"
APPEND="console=ttyS0 panic=-1 printk.time=1 ${ANCHOR_APPEND:-}"
MODE="" UNTIL="" LOG="" TIMEOUT=180
die() { echo "run-qemu: $*" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --interactive) MODE=interactive; shift ;;
    --until) MODE=until; UNTIL="${2:?--until needs a pattern}"; shift 2 ;;
    --log) LOG="${2:?--log needs a file}"; shift 2 ;;
    --timeout) TIMEOUT="${2:?--timeout needs seconds}"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '3,14p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ -n "$MODE" ]] || die "say --interactive or --until PATTERN (see --help)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run scripts/setup.sh"
[[ -f "$KERNEL" ]] || die "host kernel $KERNEL missing: build it with host-kernel/build.sh (make kernels)"
[[ -f "$INITRAMFS" ]] || die "initramfs $INITRAMFS missing: build it with tests/system/mkinitramfs.sh"
MEM="${ANCHOR_MEM:-1024}"
[[ "$MEM" =~ ^[0-9]+$ ]] || die "ANCHOR_MEM must be MiB, not '$MEM'"
QEMU=(qemu-system-x86_64 -M q35 -accel tcg -cpu max -m "$MEM" -smp 1
  -kernel "$KERNEL" -initrd "$INITRAMFS" -append "$APPEND" -device i6300esb)

if [[ "$MODE" == interactive ]]; then
  echo "run-qemu: booting Anchor OS (bay0 as PID 1) under QEMU TCG. Ctrl-A X quits;" >&2
  echo "run-qemu: Ctrl-A C then 'system_powerdown' presses the power button." >&2
  exec "${QEMU[@]}" -nographic "$@"
fi

[[ -n "$LOG" ]] || die "--until needs --log FILE"
: > "$LOG"
"${QEMU[@]}" -nodefaults -display none -serial "file:$LOG" -no-reboot "$@" &
qemu=$!
trap 'kill "$qemu" 2>/dev/null || true; wait "$qemu" 2>/dev/null || true' EXIT
end=$((SECONDS + TIMEOUT))
while ((SECONDS < end)); do
  if grep -q -- "$UNTIL" "$LOG"; then exit 0; fi
  kill -0 "$qemu" 2>/dev/null || { echo "run-qemu: QEMU exited before '$UNTIL'" >&2; exit 1; }
  sleep 0.1
done
echo "run-qemu: no '$UNTIL' within $TIMEOUT s (log: $LOG)" >&2
exit 1
