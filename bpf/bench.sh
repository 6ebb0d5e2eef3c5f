#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# anchor-bpf figures, printed and never asserted: the time the kernel takes to install
# each of our seccomp filters as seccompiler emits it (the peer) and as anchor-bpf lays
# it out, alternating in one run, each install in a fresh child process.
#   BENCH_BPF_RUNS=N   installs of each program (default 41)
set -euo pipefail
cd "$(dirname "$(realpath "$0")")/.."
cargo test --quiet -p anchor-bpf --test bench_install -- --ignored --nocapture 2>&1 \
  | grep -E '^bench bpf:|panicked|FAILED'
