#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Makes a disk image holding one GPT EFI System Partition laid out for A/B updates
# (docs/SIGNING.md): systemd-boot signed with our db key as the removable-media loader,
# loader.conf, and the slots under EFI/Linux/. No root, no loop devices (sfdisk + mtools).
#
#   EFI/BOOT/BOOTX64.EFI     systemd-boot (signed)
#   loader/loader.conf       timeout 0, no editor, no auto entries
#   EFI/Linux/anchor-A.efi   slot A (a signed UKI), blessed
#   EFI/Linux/...            slot B if given
#
# usage: mkesp.sh --out IMG [--size MIB] --slot FILE_NAME=UKI [--slot ...] [--put PATH=FILE]
#   --slot anchor-A.efi=UKI   put UKI into EFI/Linux under that (boot-counting) name
#   --put anchor-test/x=FILE  put any file at that ESP path (tests)
#   --size MIB                disk size (default 320: two slots of a ~100 MiB UKI + a temp)
set -euo pipefail
SELF=$(realpath "$0")
HERE=$(dirname "$SELF")
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
die() { echo "uki/mkesp: $*" >&2; exit 1; }
OUT="" SIZE=320 slots=() puts=()
while (($#)); do
  case "$1" in
    --out) OUT="${2:?}"; shift 2 ;;
    --size) SIZE="${2:?}"; shift 2 ;;
    --slot) slots+=("${2:?}"); shift 2 ;;
    --put) puts+=("${2:?}"); shift 2 ;;
    -h|--help) sed -n '3,16p' "$SELF"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ -n "$OUT" ]] || die "--out is required"
for t in sfdisk mformat mcopy mmd sbsign; do
  command -v "$t" >/dev/null || die "$t missing: run scripts/setup.sh"
done
BOOT=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[[ -f "$BOOT" ]] || die "$BOOT missing: run scripts/setup.sh (package systemd-boot-efi)"
KEYS=$("$HERE/keys.sh")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sbsign --key "$KEYS/db.key" --cert "$KEYS/db.crt" --output "$work/BOOTX64.EFI" "$BOOT" >/dev/null 2>&1 \
  || die "signing systemd-boot failed"
printf 'timeout 0\neditor no\nauto-entries no\nauto-firmware no\n' > "$work/loader.conf"

(( SIZE >= 34 )) || die "--size must be at least 34 MiB (FAT32)"
rm -f "$OUT.tmp"
truncate -s "${SIZE}M" "$OUT.tmp"
# One partition from 1 MiB to 1 MiB before the end (the backup GPT lives in the last 33
# sectors), of the EFI System type, with a fixed UUID (the loader reports it as
# LoaderDevicePartUUID; anchor-update finds the ESP by it).
sectors=$(( (SIZE - 2) * 2048 ))
printf 'label: gpt\nlabel-id: 5B1A8C77-5E7F-4C1B-9B64-3F2D2F1C0A01\nstart=2048, size=%d, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=7D44A5C1-96B4-4E43-A7B2-0E53C3B5E5A1, name="ESP"\n' \
  "$sectors" | sfdisk -q "$OUT.tmp" >/dev/null
img="$OUT.tmp@@1M"
# The filesystem exactly fills the partition (-T): left to itself mformat sizes it to the
# rest of the image file, 1 MiB past the partition's end, over the backup GPT; a file
# placed there is overwritten when the firmware repairs that GPT at the next boot.
mformat -i "$img" -T "$sectors" -F -v ANCHOR-ESP -N 0a1c5e5a ::
mmd -i "$img" ::/EFI ::/EFI/BOOT ::/EFI/Linux ::/loader
mcopy -i "$img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$img" "$work/loader.conf" ::/loader/loader.conf
for s in "${slots[@]}"; do
  name=${s%%=*} file=${s#*=}
  [[ -f "$file" ]] || die "slot image $file missing"
  mcopy -i "$img" "$file" "::/EFI/Linux/$name"
done
for p in "${puts[@]}"; do
  dest=${p%%=*} file=${p#*=}
  d=$(dirname "$dest")
  [[ "$d" == "." ]] || mmd -D s -i "$img" "::/$d" 2>/dev/null || true
  mcopy -o -i "$img" "$file" "::/$dest"
done
mv "$OUT.tmp" "$OUT"
echo "uki/mkesp: $OUT (${SIZE} MiB ESP: ${slots[*]:-no slots})"
