#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The signed PCR 11 policy against a real TPM 2.0 (swtpm, tpm2-tools), the way the vault
# will use it (docs/SIGNING.md "PCR 11 policy"):
#
#  1. a secret is sealed ONCE under PolicyAuthorize(our PCR public key) -- no PCR value in it;
#  2. PCR 11 is extended with the events uki/build.sh predicts for UKI v1 (and must then
#     equal the predicted value); the .pcrsig of v1 (our signature over its PolicyPCR
#     digest) satisfies PolicyAuthorize: the secret unseals;
#  3. after a power cycle, UKI v2 (an update: another version, signed with our keys)
#     unseals the same secret, with no re-enrolment;
#  4. a foreign UKI (built and signed with another key set) does not: our signature does
#     not cover its PCR 11, its own signature does not verify under our key, and a policy
#     authorized by its key is not the one the secret was sealed to.
#
# Builds small UKIs (dummy kernel and initramfs: only the measured bytes matter here).
set -euo pipefail
SELF=$(realpath "$0")
ROOT=$(realpath "$(dirname "$SELF")/../..")
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${CARGO_TARGET_DIR:=$("$ROOT/scripts/cargo-target.sh")}"
export ANCHOR_CACHE CARGO_TARGET_DIR
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
for t in swtpm swtpm_ioctl tpm2_startup tpm2_pcrextend tpm2_verifysignature jq xxd objcopy; do
  command -v "$t" >/dev/null || fail "$t missing: run scripts/setup.sh"
done

work=$(mktemp -d)
swtpm_pid=""
cleanup() { [[ -n "$swtpm_pid" ]] && kill "$swtpm_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"

# Inputs for the test UKIs.
head -c 300000 /dev/urandom > kernel
printf 'dummy initramfs\n' | gzip -n > initramfs.gz
cp /bin/true helper
build() { # OUT VERSION [ANCHOR_CACHE for the key set]
  ANCHOR_CACHE="${3:-$ANCHOR_CACHE}" "$ROOT/uki/build.sh" --kernel kernel --initramfs initramfs.gz \
    --update-helper helper --version "$2" --cmdline "console=ttyS0 anchor.test=$2" --out "$1" >/dev/null
}
build v1.efi 1
build v2.efi 2
# A foreign key set: another build cache, hence other PK/KEK/db and PCR keys.
mkdir foreign-cache
build foreign.efi 3 "$work/foreign-cache"
KEYS="$ANCHOR_CACHE/uki/test-keys"

# A TPM: swtpm on two free TCP ports on loopback.
for _ in 1 2 3 4 5 6 7 8; do
  port=$((20000 + RANDOM % 20000))
  mkdir -p tpm
  swtpm socket --tpm2 --tpmstate dir="$work/tpm" --server type=tcp,port=$port,bindaddr=127.0.0.1 \
    --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear \
    >swtpm.log 2>&1 &
  swtpm_pid=$!
  sleep 0.5
  if kill -0 "$swtpm_pid" 2>/dev/null; then break; fi
  swtpm_pid=""
done
[[ -n "$swtpm_pid" ]] || { cat swtpm.log; fail "swtpm did not start"; }
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"
power_cycle() {
  swtpm_ioctl --tcp "127.0.0.1:$((port + 1))" -i >/dev/null
  tpm2_startup -c
}

# 1. Seal a secret to PolicyAuthorize(our PCR key): the policy names the key, not a PCR.
# (No resource manager: every tool leaves its objects loaded, so transients are flushed
# after each step; the saved .ctx files load them again when needed.)
tpm2_loadexternal -C o -G rsa -u "$KEYS/pcr.pub.pem" -c ours.ctx -n ours.name >/dev/null
tpm2_flushcontext -t
tpm2_startauthsession -S trial.ctx
tpm2_policyauthorize -S trial.ctx -L sealed.policy -n ours.name >/dev/null
tpm2_flushcontext trial.ctx
tpm2_createprimary -C o -c primary.ctx >/dev/null
tpm2_flushcontext -t
head -c 32 /dev/urandom > secret
tpm2_create -C primary.ctx -L sealed.policy -i secret -u seal.pub -r seal.priv >/dev/null
tpm2_flushcontext -t
ok "secret sealed under PolicyAuthorize(our PCR 11 key)"

measure() { # UKI: replay what systemd-stub extends into PCR 11
  "$CARGO_TARGET_DIR/release/anchor-uki" pcr11 "$1" > "$1.events"
  while read -r kind digest _; do
    [[ $kind == event ]] && tpm2_pcrextend "11:sha256=$digest"
  done < "$1.events"
  local want got
  want=$(awk '$1 == "pcr11" {print $2}' "$1.events")
  got=$(tpm2_pcrread sha256:11 | awk '$1 == "11:" {print tolower($2)}' | sed 's/^0x//')
  [[ "$got" == "$want" ]] || fail "$1: PCR 11 is $got after replay, prediction $want"
}
signed_policy() { # UKI PREFIX: extract the .pcrsig's policy digest and signature
  objcopy -O binary --only-section=.pcrsig "$1" "$2.json"
  jq -r '.sha256[0].pol' "$2.json" | xxd -r -p > "$2.pol"
  jq -r '.sha256[0].sig' "$2.json" | base64 -d > "$2.sig"
}
unseal() { # KEYCTX KEYNAME PREFIX -> secret on stdout, or fails
  tpm2_verifysignature -c "$1" -g sha256 -m "$3.pol" -s "$3.sig" -f rsassa -t "$3.tkt" >/dev/null 2>&1 \
    || { tpm2_flushcontext -t; return 1; }
  tpm2_flushcontext -t
  tpm2_startauthsession --policy-session -S s.ctx
  local rc=0
  { tpm2_policypcr -S s.ctx -l sha256:11 >/dev/null &&
    tpm2_policyauthorize -S s.ctx -i "$3.pol" -n "$2" -t "$3.tkt" >/dev/null &&
    tpm2_load -C primary.ctx -u seal.pub -r seal.priv -c seal.ctx >/dev/null &&
    tpm2_flushcontext -t && tpm2_unseal -p session:s.ctx -c seal.ctx > "$3.out"; } 2>/dev/null || rc=1
  tpm2_flushcontext s.ctx 2>/dev/null || true
  tpm2_flushcontext -t 2>/dev/null || true
  return $rc
}
reload_keys() { # the primary is deterministic: recreated after each power cycle
  tpm2_createprimary -C o -c primary.ctx >/dev/null
  tpm2_loadexternal -C o -G rsa -u "$KEYS/pcr.pub.pem" -c ours.ctx -n ours.name >/dev/null
  tpm2_flushcontext -t
}

# 2. Boot v1: the secret unseals with v1's own signed policy.
power_cycle; reload_keys
measure v1.efi
ok "PCR 11 after v1's measurements equals uki/build.sh's prediction"
signed_policy v1.efi v1
unseal ours.ctx ours.name v1 || fail "v1's signed policy did not unseal"
cmp -s v1.out secret || fail "v1 unsealed the wrong secret"
ok "v1 (signed by our key) unseals"

# 3. An update signed by our key unseals the same secret: no re-enrolment.
power_cycle; reload_keys
measure v2.efi
signed_policy v2.efi v2
cmp -s v1.pol v2.pol && fail "v1 and v2 have the same PCR 11 policy (the test proves nothing)"
unseal ours.ctx ours.name v2 || fail "the update v2 did not unseal"
cmp -s v2.out secret || fail "v2 unsealed the wrong secret"
ok "v2 (an update signed by our key) unseals the same secret"
# ... and v1's signature does not carry over to v2's PCR 11.
if unseal ours.ctx ours.name v1; then fail "v1's policy unsealed while v2's PCR 11 is measured"; fi
ok "v1's signed policy does not satisfy v2's PCR 11"

# 4. A foreign UKI does not unseal.
power_cycle; reload_keys
measure foreign.efi
for theirs in v1 v2; do
  if unseal ours.ctx ours.name "$theirs"; then fail "our $theirs policy unsealed under a foreign PCR 11"; fi
done
ok "our signed policies do not satisfy a foreign UKI's PCR 11"
signed_policy foreign.efi foreign
if unseal ours.ctx ours.name foreign; then fail "the foreign signature verified under our key"; fi
ok "the foreign UKI's own signature does not verify under our key"
tpm2_loadexternal -C o -G rsa -u "$work/foreign-cache/uki/test-keys/pcr.pub.pem" -c theirs.ctx -n theirs.name >/dev/null
tpm2_flushcontext -t
if unseal theirs.ctx theirs.name foreign; then fail "a policy authorized by a foreign key unsealed"; fi
ok "a policy authorized by the foreign key is not the sealed one"
echo "pcr-policy: all checks passed"
