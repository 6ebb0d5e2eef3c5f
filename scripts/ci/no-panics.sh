#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Gate: no unwrap/expect/panic!/unreachable!/todo!/unimplemented!/indexing outside
# tests in bay0, the crates it links (sys, proto, text), the jail, and the guest-facing
# crates (vmm, net, policy, agent), and anchor-bpf, which lays out the seccomp filters. The workspace lints
# deny them; this gate (1) re-runs clippy on the non-test targets with those lints forced
# to deny, and (2) refuses any attribute that would switch them off outside tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CRATES=(bay0 anchor-bpf anchor-sys anchor-proto anchor-text anchor-jail anchor-net anchor-vmm anchor-policy anchor-agent anchor-update anchor-audit anchor-vault anchor-courier)
LINTS=(unwrap_used expect_used panic indexing_slicing unreachable todo unimplemented)
args=()
for l in "${LINTS[@]}"; do args+=(-D "clippy::$l"); done
pkgs=()
for c in "${CRATES[@]}"; do pkgs+=(-p "$c"); done
if ! cargo clippy --quiet "${pkgs[@]}" --lib --bins -- "${args[@]}" 2>/tmp/no-panics.$$; then
  cat /tmp/no-panics.$$ >&2; rm -f /tmp/no-panics.$$
  fail "clippy found panicking constructs outside tests in: ${CRATES[*]}"
fi
rm -f /tmp/no-panics.$$
pattern="allow\((clippy::)?($(IFS='|'; echo "${LINTS[*]}"))"
dirs=(bay0/src bpf/src sys/src proto/src text/src jail/src net/src vmm/src policy/src tools/anchor-agent/src tools/anchor-update/src audit/src tools/anchor-vault/src courier/src)
# Attributes that switch the lints off are tolerated only inside test modules/files.
offenders=$(grep -rnE "$pattern" "${dirs[@]}" 2>/dev/null | grep -vE '/tests?/|_test\.rs|tests\.rs' || true)
if [[ -n "$offenders" ]]; then
  # Allow only when the file marks the allow inside a #[cfg(test)] region.
  bad=""
  while IFS= read -r hit; do
    f=${hit%%:*}; rest=${hit#*:}; ln=${rest%%:*}
    if ! head -n "$ln" "$f" | grep -q '#\[cfg(test)\]'; then bad+="$hit"$'\n'; fi
  done <<<"$offenders"
  [[ -z "$bad" ]] || fail "lint switched off outside tests:"$'\n'"$bad"
fi
pass "clippy (${LINTS[*]}) clean on ${CRATES[*]} (lib+bins); no allow() outside tests"
