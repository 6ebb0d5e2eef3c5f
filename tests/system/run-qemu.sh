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
#        --uplink (either mode; `make run` passes it unless NET=0): the anchor host gets a
#          virtio-net NIC on QEMU's user-mode network (10.0.9.0/24, no IPv6) and
#          configures it itself at boot (`ip=dhcp`): address 10.0.9.15, gateway and DNS
#          10.0.9.2/.3, so outbound rooms reach what this machine reaches. QEMU maps
#          10.0.9.2 to this machine's own loopback: a room reaches services listening
#          there too.
#        --vault DIR (either mode): a vault that outlives the run (`make run VAULT=1`):
#          DIR/vault.img (a sparse 32 GiB raw disk, made on first use: the shipped
#          policies' volumes, 8 + 16 GiB, fit) as /dev/vda with bay0.vault=/dev/vda, and
#          a TPM 2.0 (swtpm, state in DIR/tpm, stopped with QEMU). bay0 makes the vault at
#          the first boot (passphrase twice, a recovery key shown once) and unlocks it at
#          every later one. Its argon2id cost is VAULT_ARGON2_KIB (default 65536: 64 MiB,
#          as the emulated CPU is slow; the product's is 1 GiB), used only when the vault
#          is made. Remove DIR to start again from a blank disk and a new TPM.
# env: ANCHOR_HOST_KERNEL (default $ANCHOR_OUT/host-bzImage), ANCHOR_INITRAMFS
#      (default $ANCHOR_OUT/initramfs.cpio.gz), ANCHOR_APPEND (extra kernel arguments),
#      ANCHOR_MEM (the anchor host's memory in MiB, default 1024).
set -euo pipefail
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
KERNEL="${ANCHOR_HOST_KERNEL:-$ANCHOR_OUT/host-bzImage}"
INITRAMFS="${ANCHOR_INITRAMFS:-$ANCHOR_OUT/initramfs.cpio.gz}"
# The emulated x86_64 anchor host's command line, shared with the system tests, the
# nested benchmark and the test UKIs: no_timer_check and highres=off, workarounds for
# QEMU's TCG (why: tests/system/src/lib.rs, BASE_APPEND).
BASE_APPEND=$(< "$(dirname "$0")/emulated-x86_64.cmdline")
APPEND="$BASE_APPEND ${ANCHOR_APPEND:-}"
MODE="" UNTIL="" LOG="" TIMEOUT=180 VAULT="" UPLINK=0
die() { echo "run-qemu: $*" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --interactive) MODE=interactive; shift ;;
    --until) MODE=until; UNTIL="${2:?--until needs a pattern}"; shift 2 ;;
    --log) LOG="${2:?--log needs a file}"; shift 2 ;;
    --timeout) TIMEOUT="${2:?--timeout needs seconds}"; shift 2 ;;
    --vault) VAULT="${2:?--vault needs a directory}"; shift 2 ;;
    --uplink) UPLINK=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '3,27p' "$0" | cut -c3-; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ -n "$MODE" ]] || die "say --interactive or --until PATTERN (see --help)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run scripts/setup.sh"
[[ -f "$KERNEL" ]] || die "host kernel $KERNEL missing: build it with host-kernel/build.sh (make kernels)"
[[ -f "$INITRAMFS" ]] || die "initramfs $INITRAMFS missing: build it with tests/system/mkinitramfs.sh"
MEM="${ANCHOR_MEM:-1024}"
[[ "$MEM" =~ ^[0-9]+$ ]] || die "ANCHOR_MEM must be MiB, not '$MEM'"

# The vault's disk and TPM (--vault): swtpm runs beside QEMU and is stopped with it.
swtpm=""
stop_swtpm() { [[ -z "$swtpm" ]] || { kill "$swtpm" 2>/dev/null; wait "$swtpm" 2>/dev/null; } || true; }
VAULT_ARGS=()
if [[ -n "$VAULT" ]]; then
  command -v swtpm >/dev/null || die "swtpm missing: run scripts/setup.sh"
  KIB="${VAULT_ARGON2_KIB:-65536}"
  [[ "$KIB" =~ ^[0-9]+$ ]] || die "VAULT_ARGON2_KIB must be KiB, not '$KIB'"
  mkdir -p "$VAULT/tpm" || die "cannot make $VAULT/tpm"
  # One run at a time on a vault (a second would take the first one's TPM socket).
  exec 9>"$VAULT/lock"
  flock -n 9 || die "another run is using the vault in $VAULT"
  if [[ ! -e "$VAULT/vault.img" ]]; then
    # Sparse: the disk takes only what the vault writes.
    truncate -s 32G "$VAULT/vault.img.new" && mv "$VAULT/vault.img.new" "$VAULT/vault.img" \
      || die "cannot make $VAULT/vault.img"
    echo "run-qemu: new vault disk $VAULT/vault.img (blank: bay0 makes the vault at this boot)" >&2
  fi
  [[ -f "$VAULT/vault.img" ]] || die "$VAULT/vault.img is not a file"
  sock="$VAULT/swtpm.sock"
  rm -f "$sock"
  swtpm socket --tpm2 --tpmstate "dir=$VAULT/tpm" --ctrl "type=unixio,path=$sock" \
    >/dev/null 2>&1 9>&- &
  swtpm=$!
  trap stop_swtpm EXIT
  for _ in $(seq 100); do [[ -S "$sock" ]] && break; sleep 0.1; done
  [[ -S "$sock" ]] || die "swtpm did not make its socket $sock within 10 s"
  VAULT_ARGS=(-chardev "socket,id=chrtpm,path=$sock" -tpmdev emulator,id=tpm0,chardev=chrtpm
    -device tpm-tis,tpmdev=tpm0
    -drive "file=$VAULT/vault.img,if=none,id=vault,format=raw" -device virtio-blk-pci,drive=vault)
  APPEND="$APPEND bay0.vault=/dev/vda anchor.vault_argon2_kib=$KIB"
fi
# The uplink (--uplink); without it, no NIC at all (QEMU's default one has no driver in
# the host kernel).
NET_ARGS=(-nic none)
if ((UPLINK)); then
  NET_ARGS=(-nic "user,model=virtio-net-pci,net=10.0.9.0/24,ipv6=off")
  APPEND="$APPEND ip=dhcp"
fi
QEMU=(qemu-system-x86_64 -M q35 -accel tcg -cpu max -m "$MEM" -smp 1
  -kernel "$KERNEL" -initrd "$INITRAMFS" -append "$APPEND" -device i6300esb "${VAULT_ARGS[@]}"
  "${NET_ARGS[@]}")

if [[ "$MODE" == interactive ]]; then
  echo "run-qemu: booting Anchor OS (bay0 as PID 1) under QEMU TCG. Ctrl-A X quits;" >&2
  echo "run-qemu: Ctrl-A C then 'system_powerdown' presses the power button." >&2
  # Not exec'ed with a vault: swtpm is stopped when QEMU ends.
  [[ -n "$swtpm" ]] || exec "${QEMU[@]}" -nographic "$@"
  "${QEMU[@]}" -nographic "$@"
  exit
fi

[[ -n "$LOG" ]] || die "--until needs --log FILE"
: > "$LOG"
"${QEMU[@]}" -nodefaults -display none -serial "file:$LOG" -no-reboot "$@" &
qemu=$!
trap 'kill "$qemu" 2>/dev/null || true; wait "$qemu" 2>/dev/null || true; stop_swtpm' EXIT
end=$((SECONDS + TIMEOUT))
while ((SECONDS < end)); do
  if grep -q -- "$UNTIL" "$LOG"; then exit 0; fi
  kill -0 "$qemu" 2>/dev/null || { echo "run-qemu: QEMU exited before '$UNTIL'" >&2; exit 1; }
  sleep 0.1
done
echo "run-qemu: no '$UNTIL' within $TIMEOUT s (log: $LOG)" >&2
exit 1
