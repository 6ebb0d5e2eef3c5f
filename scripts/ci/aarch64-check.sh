#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Gate: the whole workspace (lib, bins, tests) passes clippy -D warnings for the Duet 5
# target (aarch64): the aarch64-only code (anchor-vmm's KVM/GIC/vcpu setup) is linted too.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
T=aarch64-unknown-linux-gnu
if ! rustup target list --installed 2>/dev/null | grep -qx "$T"; then
  fail "rust std for $T is not installed and scripts/setup.sh could not add it (rustup target add $T failed on this machine)"
fi
if ! cargo clippy --quiet --workspace --all-targets --target "$T" -- -D warnings 2>/tmp/aarch64.$$; then
  cat /tmp/aarch64.$$ >&2; rm -f /tmp/aarch64.$$
  fail "cargo clippy --workspace --all-targets --target $T -- -D warnings failed"
fi
rm -f /tmp/aarch64.$$
pass "cargo clippy --workspace --all-targets --target $T -D warnings"
