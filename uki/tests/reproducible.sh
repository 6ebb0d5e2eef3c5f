#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Proves uki/build.sh is reproducible and produces a well-formed signed UKI:
#  1. builds the UKI twice, from two empty caches, at different times and under different
#     umasks, with the same inputs (kernel, initramfs, anchor-update, and the same keys:
#     keys are an input), and requires identical bytes;
#  2. checks the result: sbverify accepts it with the db certificate, it has the UKI
#     sections systemd-stub needs, and its .pcrsig covers the PCR 11 prediction.
# Inputs: $ANCHOR_OUT/host-bzImage, initramfs.cpio.gz, bin/anchor-update (make uki builds
# them). Needs objcopy, sbverify, jq.
set -euo pipefail
export TZ=UTC
ROOT=$(realpath "$(dirname "$0")/../..")
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${CARGO_TARGET_DIR:=$("$ROOT/scripts/cargo-target.sh")}"
export CARGO_TARGET_DIR
fail=0
for f in host-bzImage initramfs.cpio.gz bin/anchor-update; do
  [[ -f "$ANCHOR_OUT/$f" ]] || { echo "FAIL: $ANCHOR_OUT/$f missing: run make uki"; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Run 1 makes the key set; run 2 is given the same keys.
for run in 1 2; do
  mask=022; [[ $run == 2 ]] && mask=077
  keys=(); [[ $run == 2 ]] && keys=(ANCHOR_KEYS="$work/c1/uki/test-keys")
  ( umask "$mask"; env "${keys[@]}" ANCHOR_CACHE="$work/c$run" "$ROOT/uki/build.sh" \
      --kernel "$ANCHOR_OUT/host-bzImage" --initramfs "$ANCHOR_OUT/initramfs.cpio.gz" \
      --update-helper "$ANCHOR_OUT/bin/anchor-update" --out "$work/o$run/anchor.efi" >/dev/null )
  [[ $run == 1 ]] && sleep 1.1
done
a=$(sha256sum < "$work/o1/anchor.efi") b=$(sha256sum < "$work/o2/anchor.efi")
if [[ "$a" == "$b" ]]; then
  echo "ok: anchor.efi identical across two clean builds: sha256 ${a%% *}"
else
  echo "FAIL: anchor.efi differs between two clean builds (${a%% *} vs ${b%% *})"
  cmp "$work/o1/anchor.efi" "$work/o2/anchor.efi" | head -n 3
  fail=1
fi

uki="$work/o1/anchor.efi"
if sbverify --cert "$work/c1/uki/test-keys/db.crt" "$uki" >/dev/null 2>&1; then
  echo "ok: sbverify accepts it with the db certificate"
else
  echo "FAIL: sbverify refuses it"; fail=1
fi
sections=$(objdump -h "$uki" | awk '$1 ~ /^[0-9]+$/ {print $2}' | tr '\n' ' ')
for s in .osrel .cmdline .pcrpkey .initrd .linux .pcrsig .sbat; do
  if [[ " $sections" == *" $s "* ]]; then echo "ok: section $s present"; else echo "FAIL: no $s section ($sections)"; fail=1; fi
done
objcopy -O binary --only-section=.pcrsig "$uki" "$work/pcrsig.json"
want=$(awk '$1 == "policy" {print $2}' < <("$CARGO_TARGET_DIR/release/anchor-uki" pcr11 "$uki"))
got=$(jq -r '.sha256[0].pol' "$work/pcrsig.json")
if [[ -n "$want" && "$got" == "$want" ]]; then
  echo "ok: .pcrsig signs the PolicyPCR digest of the predicted PCR 11"
else
  echo "FAIL: .pcrsig policy $got, predicted $want"; fail=1
fi
((fail == 0)) && echo "uki reproducible: all checks passed"
exit "$fail"
