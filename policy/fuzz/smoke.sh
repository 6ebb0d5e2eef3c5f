#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Short fuzz smoke run of every policy fuzz target (scripts/fuzz-crate.sh). Exits non-zero if a
# target crashes, leaks or times out. Usage: policy/fuzz/smoke.sh [SECONDS_PER_TARGET]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../../scripts/fuzz-crate.sh" policy "$here" 70000 "$@"
