#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Builds an OVMF variable store with Secure Boot ENFORCED and only our certificates
# enrolled (PK, KEK, db from uki/keys.sh; no Microsoft keys), for Debian's
# OVMF_CODE_4M.secboot.fd. Cached by the certificates' hash; prints the template's path.
# A machine gets a private, writable copy of it (the firmware writes variables).
#
# usage: ovmf-vars.sh
set -euo pipefail
SELF=$(realpath "$0")
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
die() { echo "uki/ovmf-vars: $*" >&2; exit 1; }
TEMPLATE=/usr/share/OVMF/OVMF_VARS_4M.fd
[[ -f "$TEMPLATE" ]] || die "$TEMPLATE missing: run scripts/setup.sh (package ovmf)"
VFW_VERSION=26.10
VFW="$ANCHOR_CACHE/venv/virt-firmware-$VFW_VERSION/bin/virt-fw-vars"
[[ -x "$VFW" ]] || die "virt-fw-vars missing ($VFW): run scripts/setup.sh"
KEYS=$("$(dirname "$SELF")/keys.sh")
owner=$(cat "$KEYS/owner.guid")

key=$(cat "$SELF" "$TEMPLATE" "$KEYS/PK.crt" "$KEYS/KEK.crt" "$KEYS/db.crt" | sha256sum | cut -c1-24)
out="$ANCHOR_CACHE/uki/ovmf-vars/$key.fd"
if [[ ! -f "$out" ]]; then
  mkdir -p "$(dirname "$out")"
  "$VFW" --input "$TEMPLATE" --output "$out.tmp" --no-microsoft --secure-boot \
    --set-pk "$owner" "$KEYS/PK.crt" --add-kek "$owner" "$KEYS/KEK.crt" \
    --add-db "$owner" "$KEYS/db.crt" >"$out.log" 2>&1 \
    || { cat "$out.log" >&2; die "virt-fw-vars failed"; }
  mv "$out.tmp" "$out"
fi
echo "$out"
