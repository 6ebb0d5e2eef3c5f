#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# bay0 figures, printed and never asserted: size of the stripped static binary, idle
# RSS in hosted mode, and the time from the kernel's exec of /init to `bay0: ready`
# in a QEMU TCG boot (kernel printk clock).
set -uo pipefail
cd "$(dirname "$(realpath "$0")")/.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
BIN="${BAY0_BIN:-$ANCHOR_OUT/bin/bay0}"
say() { printf 'bench bay0: %s\n' "$*"; }

if [[ -x "$BIN" ]]; then
  if readelf -S "$BIN" 2>/dev/null | grep -q '\.symtab'; then strip_state="not stripped"; else strip_state=stripped; fi
  say "static binary $(stat -c %s "$BIN") bytes ($strip_state): $BIN"
else
  say "static binary: n/a ($BIN missing: run scripts/build-static.sh)"
fi

if [[ -x "$BIN" && $(id -u) -eq 0 ]]; then
  state=$(mktemp -d) err=$(mktemp)
  "$BIN" --hosted "$state" 2>"$err" &
  outer=$!
  for _ in $(seq 100); do grep -q 'bay0: ready' "$err" && break; sleep 0.05; done
  sleep 1
  inner=$(cut -d' ' -f1 "/proc/$outer/task/$outer/children" 2>/dev/null)
  if [[ -n "$inner" ]]; then
    say "idle RSS (hosted): PID 1 $(awk '/VmRSS/ {print $2, $3}' "/proc/$inner/status"), relay $(awk '/VmRSS/ {print $2, $3}' "/proc/$outer/status")"
  else
    say "idle RSS (hosted): n/a (bay0 did not start: $(head -c 200 "$err"))"
  fi
  kill -TERM "$outer" 2>/dev/null; wait "$outer" 2>/dev/null
  rm -rf "$state" "$err"
else
  say "idle RSS (hosted): n/a (needs root and the binary)"
fi

log=$(mktemp)
if tests/system/run-qemu.sh --until 'bay0: ready' --log "$log" --timeout 240 >/dev/null 2>&1; then
  t_init=$(grep -m1 'Run /init as init process' "$log" | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p')
  t_ready=$(grep -m1 'bay0: ready' "$log" | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p')
  if [[ -n "$t_init" && -n "$t_ready" ]]; then
    say "/init exec -> ready: $(echo "($t_ready - $t_init) * 1000" | bc | cut -d. -f1) ms (QEMU TCG, kernel clock; kernel boot to /init: ${t_init} s)"
  else
    say "/init exec -> ready: n/a (no printk timestamps in the serial log)"
  fi
else
  say "/init exec -> ready: n/a (QEMU boot failed or kernel/initramfs missing: make kernels initramfs)"
fi
rm -f "$log"
