#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Generates the TEST signing keys of this build cache, once, and prints their directory.
# Never committed, never used for a release: docs/SIGNING.md describes the production
# key ceremony. Idempotent and safe to run in parallel (a lock; files appear atomically).
#
#   PK.{key,crt}   Platform Key           (owns KEK; only the enrolment uses it)
#   KEK.{key,crt}  Key Exchange Key       (owns db)
#   db.{key,crt}   signature database key (signs systemd-boot and every UKI)
#   db.der         the db certificate in DER (what anchor-update trusts for updates)
#   pcr.key        PCR 11 policy key      (signs the UKI's .pcrsig)
#   pcr.pub.pem    its public half        (the UKI's .pcrpkey)
#   owner.guid     the EFI signature owner GUID of our certificates
#
# usage: keys.sh            (directory: $ANCHOR_KEYS, default $ANCHOR_CACHE/uki/test-keys)
set -euo pipefail
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
KEYS="${ANCHOR_KEYS:-$ANCHOR_CACHE/uki/test-keys}"
# Anchor OS's signature owner GUID (fixed: it names who owns an entry in db, not a secret).
OWNER=19d28a6a-34d8-491c-bdf7-e82633cf1e60
die() { echo "uki/keys: $*" >&2; exit 1; }
command -v openssl >/dev/null || die "openssl missing: run scripts/setup.sh"

complete() {
  local f
  for f in PK.key PK.crt KEK.key KEK.crt db.key db.crt db.der pcr.key pcr.pub.pem owner.guid; do
    [[ -s "$KEYS/$f" ]] || return 1
  done
}

if ! complete; then
  [[ -z "${ANCHOR_KEYS:-}" ]] || die "$KEYS lacks keys and is not the test-key directory: provide them (docs/SIGNING.md)"
  mkdir -p "$(dirname "$KEYS")"
  exec 9>"$KEYS.lock"
  flock 9
  if ! complete; then
    tmp=$(mktemp -d "$KEYS.tmp.XXXXXX")
    chmod 0700 "$tmp"
    for k in PK KEK db; do
      openssl req -new -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -subj "/CN=Anchor OS TEST $k (this build cache only)/" \
        -keyout "$tmp/$k.key" -out "$tmp/$k.crt" 2>/dev/null
    done
    openssl x509 -in "$tmp/db.crt" -outform DER -out "$tmp/db.der"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/pcr.key" 2>/dev/null
    openssl pkey -in "$tmp/pcr.key" -pubout -out "$tmp/pcr.pub.pem"
    echo "$OWNER" > "$tmp/owner.guid"
    chmod 0600 "$tmp"/*.key
    rm -rf "$KEYS"
    mv "$tmp" "$KEYS"
    echo "uki/keys: generated TEST keys in $KEYS" >&2
  fi
fi
echo "$KEYS"
