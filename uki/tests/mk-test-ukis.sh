#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Builds what tests/system/tests/uki.rs boots, into $ANCHOR_OUT/uki-test/ (all cached):
#
#   vars.fd                    OVMF variables: Secure Boot on, our PK/KEK/db enrolled
#   anchor.unsigned.efi        the product UKI ($ANCHOR_OUT/anchor.efi) without its signature
#   anchor.tampered.efi        the product UKI with one byte of its .cmdline changed
#   t1.efi t2.efi              small test UKIs (bay0-only initramfs, no room), versions 1, 2
#   t3-panic.efi               version 3, whose kernel panics at boot (rdinit=/nonexistent)
#   t0.5.efi                   version 0.5 (a downgrade)
#   t4-tampered.efi            version 4, one byte changed after signing
#   vault-v1.efi vault-v2.efi  the product initramfs with a vault disk on the command line
#                              (bay0.vault=/dev/vdb), versions 1 and 2, signed with our keys
#   vault-v2-foreign-pcr.efi   the same as vault-v2.efi but its PCR 11 policy (.pcrpkey,
#                              .pcrsig) is another key's: the firmware boots it (our db
#                              key signs it), the vault must not open for it
#
# The test UKIs carry an anchor-update built with the test-only `test-hooks` feature
# (updates staged on the ESP are applied at boot; `stop-after` cuts an apply short);
# the product UKI never does.
set -euo pipefail
SELF=$(realpath "$0")
ROOT=$(realpath "$(dirname "$SELF")/../..")
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
export ANCHOR_CACHE ANCHOR_OUT
die() { echo "uki/mk-test-ukis: $*" >&2; exit 1; }
OUT="$ANCHOR_OUT/uki-test"
PRODUCT="$ANCHOR_OUT/anchor.efi"
[[ -f "$PRODUCT" ]] || die "$PRODUCT missing: run make uki"
command -v sbattach >/dev/null || die "sbattach missing: run scripts/setup.sh (sbsigntool)"
mkdir -p "$OUT"

cp "$("$ROOT/uki/ovmf-vars.sh")" "$OUT/vars.fd"

# Product UKI, unsigned and tampered.
rm -f "$OUT/anchor.unsigned.efi" "$OUT/anchor.tampered.efi"
cp "$PRODUCT" "$OUT/anchor.unsigned.efi"
sbattach --remove "$OUT/anchor.unsigned.efi" >/dev/null 2>&1
flip() { # FILE SECTION: change the first byte of SECTION (after signing)
  local off
  off=$(objdump -h "$1" | awk -v s="$2" '$2 == s {print $6}')
  [[ -n "$off" ]] || die "$1 has no $2 section"
  local byte
  byte=$(dd if="$1" bs=1 skip=$((16#$off)) count=1 2>/dev/null | xxd -p)
  printf "\\x$(printf '%02x' $(( 16#$byte ^ 0x20 )))" | dd of="$1" bs=1 seek=$((16#$off)) conv=notrunc 2>/dev/null
}
cp "$PRODUCT" "$OUT/anchor.tampered.efi"
flip "$OUT/anchor.tampered.efi" .cmdline

# anchor-update with test hooks (own target dir: the release binary is never touched).
hooks_target="$("$ROOT/scripts/cargo-target.sh" test-hooks)"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" CARGO_TARGET_DIR="$hooks_target" \
  cargo build --quiet --release --locked --manifest-path "$ROOT/Cargo.toml" \
  --target x86_64-unknown-linux-gnu -p anchor-update --bin anchor-update --features test-hooks
helper="$hooks_target/x86_64-unknown-linux-gnu/release/anchor-update"

"$ROOT/tests/system/mkinitramfs.sh" --minimal --out "$OUT/min-initramfs.cpio.gz" >/dev/null
# The emulated x86_64 anchor host's command line (no_timer_check, highres=off: why, in
# tests/system/src/lib.rs, BASE_APPEND). These images only ever run emulated.
cmd=$(< "$ROOT/tests/system/emulated-x86_64.cmdline")
[[ -n "$cmd" ]] || die "tests/system/emulated-x86_64.cmdline is empty"
mk() { # NAME VERSION [EXTRA CMDLINE]
  "$ROOT/uki/build.sh" --initramfs "$OUT/min-initramfs.cpio.gz" --update-helper "$helper" \
    --version "$2" --cmdline "$cmd${3:+ $3}" --out "$OUT/$1" | tail -n 1
}
mk t1.efi 1
mk t2.efi 2
mk t3-panic.efi 3 "rdinit=/nonexistent"
mk t0.5.efi 0.5
mk t4.efi 4
# A copy: the output is a hard link into the cache, which must stay intact.
rm -f "$OUT/t4-tampered.efi"
cp "$OUT/t4.efi" "$OUT/t4-tampered.efi"
flip "$OUT/t4-tampered.efi" .osrel

# Vault UKIs: the signed PCR 11 policy in a real boot (the product initramfs, no room).
vcmd="$cmd bay0.vault=/dev/vdb anchor.vault_argon2_kib=32768"
mkv() { # NAME VERSION
  "$ROOT/uki/build.sh" --version "$2" --cmdline "$vcmd" --out "$OUT/$1" | tail -n 1
}
mkv vault-v1.efi 1
mkv vault-v2.efi 2
# Our PK/KEK/db (links, so they follow this cache's keys) with another PCR policy key,
# made once.
ours=$("$ROOT/uki/keys.sh")
mixed="$OUT/foreign-pcr-keys"
mkdir -p -m 0700 "$mixed"
for f in PK.key PK.crt KEK.key KEK.crt db.key db.crt db.der owner.guid; do
  ln -sfn "$ours/$f" "$mixed/$f"
done
if [[ ! -s "$mixed/pcr.pub.pem" ]]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$mixed/pcr.key.tmp" 2>/dev/null
  openssl pkey -in "$mixed/pcr.key.tmp" -pubout -out "$mixed/pcr.pub.pem.tmp"
  mv "$mixed/pcr.key.tmp" "$mixed/pcr.key"
  mv "$mixed/pcr.pub.pem.tmp" "$mixed/pcr.pub.pem"
fi
ANCHOR_KEYS="$mixed" mkv vault-v2-foreign-pcr.efi 2
echo "uki/mk-test-ukis: test images in $OUT"
