# SPDX-License-Identifier: GPL-3.0-or-later
# Shared helpers for the CI gates (sourced, not executed).
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
gate_name=$(basename "$0" .sh)
pass() { printf 'gate %-22s PASS  %s\n' "$gate_name" "$*"; exit 0; }
fail() { printf 'gate %-22s FAIL  %s\n' "$gate_name" "$*" >&2; exit 1; }
