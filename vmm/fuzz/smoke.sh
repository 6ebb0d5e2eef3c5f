#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Short fuzz smoke run of every anchor-vmm fuzz target (cargo +nightly fuzz): blk_queue
# (descriptor chains + block requests on a fuzzer-built virtqueue, with EVENT_IDX and a small
# per-turn byte budget), mmio_transport (the virtio-mmio register state machine and its
# worker over rng, vsock, net or block, driven by register accesses, ring pokes, event-loop
# turns, device fd events and the host's side), vsock_packet (header parser), vsock_tx
# (guest packets, host socket traffic, events, resets, and timeouts on the device's clock,
# on live vsock connections, checked against a model of them), net_queue (virtio-net
# frames both ways between fuzzer-built rings and a backend socket fed fuzzer bytes). Exits non-zero if a target crashes, leaks
# or times out. Usage: vmm/fuzz/smoke.sh [SECONDS_PER_TARGET]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
run_target="$here/../../scripts/fuzz-target.sh"
secs="${1:-${FUZZ_SECONDS:-20}}"
cache="${ANCHOR_CACHE:-/var/cache/anchor-os}"
export CARGO_TARGET_DIR="${VMM_FUZZ_TARGET_DIR:-$("$here/../../scripts/cargo-target.sh" vmm-fuzz)}"
work="$(mktemp -d)"
artifacts="$cache/vmm-fuzz-artifacts"
trap 'rm -rf "$work"' EXIT
# vsock_tx and mmio_transport bind sockets (the device's, its lock file, the harness's
# `<sock>_<port>` listeners) and make a disk image in the temporary directory: ours,
# removed above.
export TMPDIR="$work"

cd "$here"
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
    echo "vmm fuzz smoke: needs cargo-fuzz and a nightly toolchain (scripts/setup.sh)" >&2
    exit 1
fi

# Build once (all targets), so the per-target time is fuzzing time.
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" cargo +nightly fuzz build >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    echo "vmm fuzz smoke: build FAILED" >&2
    exit 1
}

for target in $(cargo +nightly fuzz list); do
    "$run_target" "vmm fuzz" "$here" "$target" "$secs" "$artifacts" -max_len=8192
done
echo "vmm fuzz smoke: ok"
