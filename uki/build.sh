#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Assembles and signs the Anchor OS base as a Unified Kernel Image (docs/SIGNING.md):
#
#   systemd-stub (Debian's systemd-boot-efi, linuxx64.efi.stub)
#   + .osrel    os-release (ID=anchor, IMAGE_VERSION)
#   + .cmdline  the kernel command line (uki/cmdline): fixed, measured, signed
#   + .pcrpkey  the PCR 11 policy public key
#   + .initrd   the product initramfs (tests/system/mkinitramfs.sh) + a small archive with
#               anchor-update, the db certificate it trusts and /usr/lib/os-release
#   + .linux    the host kernel (bzImage)
#   + .pcrsig   our signature over the PolicyPCR digest of the PCR 11 the stub will
#               measure for the sections above (.pcrsig itself is not measured)
#   then sbsign with the db key.
#
# Reproducible: the same inputs give the same bytes (uki/tests/reproducible.sh). Cached by
# the hash of every input under $ANCHOR_CACHE/uki/images/<key>/; a second run relinks.
#
# usage: build.sh [--version V] [--kernel F] [--initramfs F] [--cmdline TEXT]
#                 [--update-helper F] [--out F]
#   --version V        IMAGE_VERSION (default: the workspace version in Cargo.toml)
#   --kernel F         default $ANCHOR_OUT/host-bzImage
#   --initramfs F      default $ANCHOR_OUT/initramfs.cpio.gz
#   --cmdline TEXT     default: the contents of uki/cmdline
#   --update-helper F  the static anchor-update (default $ANCHOR_OUT/bin/anchor-update)
#   --out F            default $ANCHOR_OUT/anchor.efi (also F.pcr11: the PCR 11 prediction)
# Keys: uki/keys.sh (TEST keys of this cache, or $ANCHOR_KEYS).
set -euo pipefail
SELF=$(realpath "$0")
HERE=$(dirname "$SELF")
ROOT=$(dirname "$HERE")
# shellcheck source=tests/system/initramfs-lib.sh
source "$ROOT/tests/system/initramfs-lib.sh"
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${CARGO_TARGET_DIR:=$("$ROOT/scripts/cargo-target.sh")}"
export CARGO_TARGET_DIR
die() { echo "uki/build: $*" >&2; exit 1; }

VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml")
KERNEL="$ANCHOR_OUT/host-bzImage"
INITRAMFS="$ANCHOR_OUT/initramfs.cpio.gz"
CMDLINE=$(tr -s '\n' ' ' < "$HERE/cmdline" | sed 's/ *$//')
HELPER="$ANCHOR_OUT/bin/anchor-update"
OUT="$ANCHOR_OUT/anchor.efi"
while (($#)); do
  case "$1" in
    --version) VERSION="${2:?}"; shift 2 ;;
    --kernel) KERNEL="${2:?}"; shift 2 ;;
    --initramfs) INITRAMFS="${2:?}"; shift 2 ;;
    --cmdline) CMDLINE="${2:?}"; shift 2 ;;
    --update-helper) HELPER="${2:?}"; shift 2 ;;
    --out) OUT="${2:?}"; shift 2 ;;
    -h|--help) sed -n '3,27p' "$SELF"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
STUB=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
# The signature's signingTime: SOURCE_DATE_EPOCH when set (release builds), else fixed.
if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
  SIGNING_TIME=$(date -u -d "@$SOURCE_DATE_EPOCH" '+%Y-%m-%d %H:%M:%S')
else
  SIGNING_TIME="2026-01-01 00:00:00"
fi
for t in objcopy objdump sbsign sbverify openssl cpio faketime; do
  command -v "$t" >/dev/null || die "$t missing: run scripts/setup.sh"
done
[[ -f "$STUB" ]] || die "$STUB missing: run scripts/setup.sh (package systemd-boot-efi)"
[[ -f "$KERNEL" ]] || die "kernel $KERNEL missing: run host-kernel/build.sh"
[[ -f "$INITRAMFS" ]] || die "initramfs $INITRAMFS missing: run tests/system/mkinitramfs.sh"
[[ -x "$HELPER" ]] || die "anchor-update $HELPER missing: run scripts/build-static.sh"
# What anchor-update reads as a version (tools/anchor-update/src/version.rs): a base with
# any other would boot, but no update could ever be applied on it (the floor is unreadable).
[[ $VERSION =~ ^[0-9]{1,9}(\.[0-9]{1,9}){0,7}$ ]] \
  || die "version $VERSION: must be 1 to 8 dotted numbers of at most 9 digits each"

KEYS=$("$HERE/keys.sh")
cargo build --quiet --release --locked --manifest-path "$ROOT/Cargo.toml" -p anchor-update --bin anchor-uki
TOOL="$CARGO_TARGET_DIR/release/anchor-uki"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'NAME="Anchor OS"\nID=anchor\nIMAGE_ID=anchor\nIMAGE_VERSION=%s\nVERSION_ID=%s\nPRETTY_NAME="Anchor OS %s"\nHOME_URL="https://anchor-os.example/"\n' \
  "$VERSION" "$VERSION" "$VERSION" > "$work/os-release"
# systemd-boot reads .osrel with its own rules (no single quotes, no escapes: see
# tools/anchor-update/src/osrel.rs); a value it would read otherwise than a shell does,
# or another version than the one asked for, is refused here, naming the key.
[[ $("$TOOL" check-osrel "$work/os-release" 2>&1) == "$VERSION" ]] \
  || die "$("$TOOL" check-osrel "$work/os-release" 2>&1 | sed 's/^anchor-uki: //')"
printf '%s' "$CMDLINE" > "$work/cmdline"
cp "$KEYS/pcr.pub.pem" "$work/pcrpkey"
# The archive the UKI adds to the product initramfs (the kernel unpacks both, in order).
mkdir -p "$work/extra/usr/lib/anchor" "$work/extra/etc/anchor/secureboot"
install -m 0755 "$HELPER" "$work/extra/usr/lib/anchor/anchor-update"
install -m 0644 "$KEYS/db.der" "$work/extra/etc/anchor/secureboot/db.der"
install -m 0644 "$work/os-release" "$work/extra/usr/lib/os-release"
find "$work/extra" -type d -exec chmod 0755 {} +
cpio_stage "$work/extra" | gzip -n -9 > "$work/extra.cpio.gz"
cat "$INITRAMFS" "$work/extra.cpio.gz" > "$work/initrd"

key=$( {
  sha256sum < "$SELF"; sha256sum < "$INITRAMFS_LIB"; sha256sum < "$STUB"; sha256sum < "$TOOL"
  for f in os-release cmdline pcrpkey initrd; do sha256sum < "$work/$f"; done
  sha256sum < "$KERNEL"; sha256sum < "$KEYS/db.crt"; echo "$SIGNING_TIME"
} | sha256sum | cut -c1-32)
cdir="$ANCHOR_CACHE/uki/images/$key"

if [[ ! -f "$cdir/anchor.efi" ]]; then
  # Sections go after the stub's own, each at a 4 KiB aligned address.
  align=4096 end=0
  while read -r idx _name size vma _rest; do
    [[ $idx =~ ^[0-9]+$ ]] || continue
    e=$((16#$vma + 16#$size)); ((e > end)) && end=$e
  done < <(objdump -h "$STUB")
  off=$(( (end + align - 1) / align * align ))
  args=()
  add() { # NAME FILE
    args+=(--add-section "$1=$2" --change-section-vma "$1=$(printf '0x%x' "$off")")
    off=$(( (off + $(stat -c %s "$2") + align - 1) / align * align ))
  }
  add .osrel "$work/os-release"; add .cmdline "$work/cmdline"; add .pcrpkey "$work/pcrpkey"
  add .initrd "$work/initrd"; add .linux "$KERNEL"
  objcopy "${args[@]}" "$STUB" "$work/unsigned.efi"
  "$TOOL" finalize "$work/unsigned.efi"
  # The signed PCR 11 policy: the PolicyPCR digest of the PCR 11 the stub will measure.
  "$TOOL" pcr11 "$work/unsigned.efi" > "$work/pcr11"
  "$TOOL" policy "$work/unsigned.efi" --out "$work/policy"
  openssl dgst -sha256 -sign "$KEYS/pcr.key" -out "$work/policy.sig" "$work/policy"
  "$TOOL" pcrsig --policy "$work/policy" --signature "$work/policy.sig" \
    --pubkey "$KEYS/pcr.pub.pem" > "$work/pcrsig.json"
  args=()
  add .pcrsig "$work/pcrsig.json"
  objcopy "${args[@]}" "$work/unsigned.efi" "$work/withsig.efi"
  "$TOOL" finalize "$work/withsig.efi"
  "$TOOL" pcr11 "$work/withsig.efi" | cmp -s - "$work/pcr11" \
    || die "adding .pcrsig changed the measured sections (objcopy rewrote them?)"
  # sbsign puts the current time in the signature (PKCS#7 signingTime): a frozen clock
  # (-f: absolute time that does not advance) keeps the bytes reproducible; UEFI ignores it.
  faketime -f "$SIGNING_TIME" sbsign --key "$KEYS/db.key" --cert "$KEYS/db.crt" --output "$work/signed.efi" \
    "$work/withsig.efi" >/dev/null 2>"$work/sbsign.log" || { cat "$work/sbsign.log" >&2; die "sbsign failed"; }
  sbverify --cert "$KEYS/db.crt" "$work/signed.efi" >/dev/null 2>&1 || die "sbverify refuses the signed UKI"
  "$TOOL" verify "$work/signed.efi" --cert "$KEYS/db.der" >/dev/null
  [[ $("$TOOL" version "$work/signed.efi") == "$VERSION" ]] \
    || die "anchor-update does not read version $VERSION from the signed UKI"
  mkdir -p "$ANCHOR_CACHE/uki/images"
  tmpc=$(mktemp -d "$cdir.tmp.XXXXXX")
  cp "$work/signed.efi" "$tmpc/anchor.efi"
  cp "$work/pcr11" "$tmpc/anchor.efi.pcr11"
  chmod 0644 "$tmpc"/*
  sync "$tmpc"/* # on disk before they are renamed into the cache (a power cut)
  rm -rf "$cdir"; mv "$tmpc" "$cdir"
  echo "uki/build: built $cdir/anchor.efi"
else
  echo "uki/build: cached $cdir/anchor.efi"
fi
mkdir -p "$(dirname "$OUT")"
ln -f "$cdir/anchor.efi" "$OUT" 2>/dev/null || cp -f "$cdir/anchor.efi" "$OUT"
ln -f "$cdir/anchor.efi.pcr11" "$OUT.pcr11" 2>/dev/null || cp -f "$cdir/anchor.efi.pcr11" "$OUT.pcr11"
# Keep the 12 most recent images in the cache.
ls -1dt "$ANCHOR_CACHE"/uki/images/*/ 2>/dev/null | tail -n +13 | xargs -r rm -rf
printf 'uki/build: %s: version %s, %d bytes, %s\n' "$OUT" "$VERSION" "$(stat -c %s "$OUT")" \
  "$(grep '^pcr11 ' "$OUT.pcr11")"
