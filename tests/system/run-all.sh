#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Runs the QEMU system tests (crate anchor-systest) against the built artifacts and
# prints the total time. Also builds what only the tests need: a static bay0 with the
# `debug-stall` feature (own target dir, so the release bay0 is never touched) in a
# bay0-only initramfs for the watchdog test.
#
# Inputs (env, with defaults): ANCHOR_HOST_KERNEL=$ANCHOR_OUT/host-bzImage,
# ANCHOR_INITRAMFS=$ANCHOR_OUT/initramfs.cpio.gz; extra arguments go to the test runner
# (e.g. a test-name filter).
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/../.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
export ANCHOR_CACHE ANCHOR_OUT
export ANCHOR_HOST_KERNEL="${ANCHOR_HOST_KERNEL:-$ANCHOR_OUT/host-bzImage}"
export ANCHOR_INITRAMFS="${ANCHOR_INITRAMFS:-$ANCHOR_OUT/initramfs.cpio.gz}"
start=$(date +%s.%N)
die() { echo "run-all: $*" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run scripts/setup.sh"
[[ -f "$ANCHOR_HOST_KERNEL" ]] || die "host kernel $ANCHOR_HOST_KERNEL missing: run host-kernel/build.sh (make kernels)"
[[ -f "$ANCHOR_INITRAMFS" ]] || die "initramfs $ANCHOR_INITRAMFS missing: run tests/system/mkinitramfs.sh (make initramfs)"

# The debug-stall bay0 (test-only; see bay0/Cargo.toml) and its initramfs.
stall_target="$(scripts/cargo-target.sh debug-stall)"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" CARGO_TARGET_DIR="$stall_target" \
  cargo build --quiet --release --locked --target x86_64-unknown-linux-gnu -p bay0 --features debug-stall
export ANCHOR_STALL_INITRAMFS="$ANCHOR_CACHE/systest/initramfs-debug-stall.cpio.gz"
tests/system/mkinitramfs.sh --minimal --bay0 "$stall_target/x86_64-unknown-linux-gnu/release/bay0" \
  --out "$ANCHOR_STALL_INITRAMFS"

# The vault power-cut test's initramfs (product initramfs + a test-only busybox script).
export ANCHOR_VAULT_TEST_INITRAMFS="$ANCHOR_OUT/initramfs-vault-test.cpio.gz"
tests/system/mk-vault-test-initramfs.sh "$ANCHOR_INITRAMFS" "$ANCHOR_VAULT_TEST_INITRAMFS"

# The product initramfs plus the small test rooms (tests/system/policies) and the
# network tests' stand-in for the outside world (tests/system/net-tools).
export ANCHOR_ROOMS_INITRAMFS="$ANCHOR_CACHE/systest/initramfs-rooms.cpio.gz"
tests/system/net-tools/build.sh "$ANCHOR_OUT/bin/anchor-outside"
tests/system/mkinitramfs.sh --policies tests/system/policies --out "$ANCHOR_ROOMS_INITRAMFS" \
  --extra "$ANCHOR_OUT/bin/anchor-outside:usr/lib/anchor/test/anchor-outside" \
  --extra tests/system/net-tools/resolv.conf:etc/resolv.conf

echo "run-all: kernel $ANCHOR_HOST_KERNEL, initramfs $ANCHOR_INITRAMFS"
status=0
if cargo nextest --version >/dev/null 2>&1; then
  # Each test is one single-CPU QEMU; two at a time fit the 2-core machine.
  cargo nextest run --no-fail-fast -j 2 -p anchor-systest "$@" || status=$?
else
  cargo test -p anchor-systest -- --test-threads=2 "$@" || status=$?
fi
end=$(date +%s.%N)
printf 'run-all: system tests %s in %.1f s (serial logs: %s/systest/logs)\n' \
  "$([[ $status -eq 0 ]] && echo passed || echo FAILED)" "$(echo "$end - $start" | bc)" "$ANCHOR_CACHE"
exit "$status"
