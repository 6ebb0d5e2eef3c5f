#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Benchmarks of the signed base (printed, never asserted), each against a peer measured in
# the same run:
#  1. QEMU start -> "bay0: ready": the signed UKI booted by OVMF with Secure Boot, our
#     signed systemd-boot and swtpm (the product path) vs the harness's direct kernel boot
#     (-kernel/-initrd, no firmware) of the same kernel, initramfs and command line. TCG.
#  2. `anchor-update apply` of the real UKI into an ESP directory on this machine's disk
#     (read, Authenticode verify, write, fsync, read back, rename) vs `dd conv=fsync` of
#     the same bytes.
# Inputs: $ANCHOR_OUT/{anchor.efi,host-bzImage,initramfs.cpio.gz,bin/anchor-update}.
# RUNS=N (default 3) runs of each boot; the median is reported.
set -euo pipefail
SELF=$(realpath "$0")
HERE=$(dirname "$SELF")
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
RUNS=${RUNS:-3}
die() { echo "uki/bench: $*" >&2; exit 1; }
for f in anchor.efi host-bzImage initramfs.cpio.gz bin/anchor-update; do
  [[ -f "$ANCHOR_OUT/$f" ]] || die "$ANCHOR_OUT/$f missing: run make uki"
done
work=$(mktemp -d "$ANCHOR_CACHE/uki-bench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cmdline=$(tr -s '\n' ' ' < "$HERE/cmdline" | sed 's/ *$//')

# Start QEMU with "$@", wait for "bay0: ready" on its serial, print the seconds taken.
time_to_ready() {
  local log="$work/serial.log" start end
  : > "$log"
  start=$(date +%s.%N)
  qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 1 -nodefaults -no-user-config \
    -display none -serial "file:$log" -no-reboot "$@" 2>>"$work/qemu.err" &
  local q=$!
  pids+=("$q")
  for _ in $(seq 1 3000); do
    if grep -aq 'bay0: ready' "$log"; then break; fi
    kill -0 "$q" 2>/dev/null || break
    sleep 0.1
  done
  end=$(date +%s.%N)
  kill "$q" 2>/dev/null || true
  wait "$q" 2>/dev/null || true
  grep -aq 'bay0: ready' "$log" || die "no 'bay0: ready' (serial log: $log)"
  echo "$end - $start" | bc
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

vars_template=$("$HERE/ovmf-vars.sh")
"$HERE/mkesp.sh" --out "$work/esp.img" --size 64 --slot "anchor-A.efi=$ANCHOR_OUT/anchor.efi" >/dev/null
direct=() uki=()
for i in $(seq 1 "$RUNS"); do
  direct+=("$(time_to_ready -M q35 -kernel "$ANCHOR_OUT/host-bzImage" \
    -initrd "$ANCHOR_OUT/initramfs.cpio.gz" -append "$cmdline")")
  cp "$vars_template" "$work/vars.fd"
  rm -rf "$work/tpm"; mkdir -p "$work/tpm"
  swtpm socket --tpm2 --tpmstate dir="$work/tpm" --ctrl type=unixio,path="$work/swtpm.sock" &
  pids+=("$!")
  for _ in $(seq 1 100); do [[ -S "$work/swtpm.sock" ]] && break; sleep 0.05; done
  uki+=("$(time_to_ready -M q35,smm=on -global driver=cfi.pflash01,property=secure,value=on \
    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd \
    -drive "if=pflash,format=raw,unit=1,file=$work/vars.fd" \
    -drive "file=$work/esp.img,if=none,id=esp,format=raw" -device virtio-blk-pci,drive=esp \
    -chardev "socket,id=chrtpm,path=$work/swtpm.sock" -tpmdev emulator,id=tpm0,chardev=chrtpm \
    -device tpm-tis,tpmdev=tpm0)")
done
d=$(printf '%s\n' "${direct[@]}" | median)
u=$(printf '%s\n' "${uki[@]}" | median)
size=$(stat -c %s "$ANCHOR_OUT/anchor.efi")
printf 'uki: QEMU start -> bay0: ready, TCG, median of %d\n' "$RUNS"
printf '  direct kernel boot (harness, no firmware)        %6.2f s   runs: %s\n' "$d" "${direct[*]}"
printf '  UKI via OVMF Secure Boot + systemd-boot + swtpm  %6.2f s   runs: %s\n' "$u" "${uki[*]}"
printf '  ratio UKI / direct: %.2f  (UKI %d bytes)\n' "$(echo "$u / $d" | bc -l)" "$size"

# 2. apply vs a plain copy of the same bytes, on this machine's disk.
keys=$("$HERE/keys.sh")
a=() c=()
for i in $(seq 1 5); do
  rm -rf "$work/esp"; mkdir -p "$work/esp/EFI/Linux"; sync
  s=$(date +%s.%N)
  "$ANCHOR_OUT/bin/anchor-update" apply "$ANCHOR_OUT/anchor.efi" --esp "$work/esp" \
    --running A --cert "$keys/db.der" >/dev/null
  a+=("$(echo "$(date +%s.%N) - $s" | bc)")
  rm -f "$work/copy.efi"; sync
  s=$(date +%s.%N)
  dd if="$ANCHOR_OUT/anchor.efi" of="$work/copy.efi" bs=1M conv=fsync status=none
  c+=("$(echo "$(date +%s.%N) - $s" | bc)")
done
am=$(printf '%s\n' "${a[@]}" | median)
cm=$(printf '%s\n' "${c[@]}" | median)
printf 'uki: update apply of the real UKI (%d bytes) into an ESP directory, median of 5\n' "$size"
printf '  anchor-update apply (verify + write + fsync + read back + arm)  %6.3f s\n' "$am"
printf '  dd conv=fsync of the same bytes (peer)                          %6.3f s\n' "$cm"
printf '  ratio apply / copy: %.2f\n' "$(echo "$am / $cm" | bc -l)"
