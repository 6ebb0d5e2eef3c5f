#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Soak: run one test stage N times in a row on the artefacts already built and print a
# pass/fail table per test. A test that fails one run in N is a bug to fix at its root;
# this finds it. Not part of `make test` (it is N times its cost). Nothing is retried:
# every run counts.
#
# usage: scripts/soak.sh [--stage system|unit|hostile|escape] [-n N] [FILTER...]
#   --stage system   the QEMU system tests (tests/system/run-all.sh), default N=10
#   --stage unit     every unit and crate integration test (as `make unit`), default N=20
#   --stage hostile  anchor-vmm's hostile-guest and seccomp tests on this host's KVM, N=20
#   --stage escape   namespace rooms on this host (tests/escape, as `make escape`), N=20
#   FILTER...        passed to the test runner (test-name filters)
# Logs of every run: $ANCHOR_CACHE/soak/<stage>-<time>/run-<i>.log
# Exit status: 0 when every test passed every run, 1 otherwise.
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
export ANCHOR_CACHE
STAGE=system
N=
filters=()
die() { echo "soak: $*" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --stage) STAGE="${2:?--stage needs system, unit, hostile or escape}"; shift 2 ;;
    -n) N="${2:?-n needs a number}"; shift 2 ;;
    -h|--help) sed -n '3,14p' "$SELF"; exit 0 ;;
    *) filters+=("$1"); shift ;;
  esac
done
case "$STAGE" in
  system) : "${N:=10}" ;;
  unit|hostile|escape) : "${N:=20}" ;;
  *) die "unknown stage '$STAGE' (system, unit, hostile or escape)" ;;
esac
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$N'"
cargo nextest --version >/dev/null 2>&1 || die "cargo-nextest is missing (it comes with the Rust toolchain here)"

logs="$ANCHOR_CACHE/soak/$STAGE-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$logs"

run_stage() {
  local common=(--no-fail-fast --status-level all --final-status-level none)
  case "$STAGE" in
    system) tests/system/run-all.sh --status-level all --final-status-level none "${filters[@]}" ;;
    unit) cargo nextest run --workspace --exclude anchor-systest --exclude anchor-escape "${common[@]}" "${filters[@]}" ;;
    escape) cargo nextest run -p anchor-escape "${common[@]}" "${filters[@]}" ;;
    hostile) cargo nextest run -p anchor-vmm "${common[@]}" \
               -E 'binary(/^hostile/) | binary(=seccomp)' "${filters[@]}" ;;
  esac
}

declare -A pass fail
order=()
failed_runs=0
start=$(date +%s)
for ((i = 1; i <= N; i++)); do
  log="$logs/run-$i.log"
  t0=$(date +%s)
  status=0
  run_stage >"$log" 2>&1 || status=$?
  # nextest status lines: "        PASS [   1.234s] ( 3/17) crate::binary test_name"
  seen=0
  while IFS=$'\t' read -r result name; do
    [[ -n "${pass[$name]+x}" ]] || { pass[$name]=0; fail[$name]=0; order+=("$name"); }
    # LEAK: passed, but the test process's output pipes stayed open a little longer than
    # nextest's leak timeout (seen under heavy load); nextest itself counts it as passed.
    if [[ "$result" == PASS || "$result" == LEAK ]]; then
      pass[$name]=$((pass[$name] + 1))
    else
      fail[$name]=$((fail[$name] + 1))
    fi
    seen=$((seen + 1))
  done < <(sed -E 's/\x1b\[[0-9;]*m//g' "$log" | awk '
    match($0, /^ *([A-Z]+(-[A-Z]+)?) +\[ *[0-9.]+s\] (\( *[0-9]+\/ *[0-9]+\) )?/) {
      result = $1
      rest = substr($0, RSTART + RLENGTH)
      if (result == "START" || result == "SLOW" || result == "RETRY") next
      printf "%s\t%s\n", result, rest
    }')
  if ((status != 0)); then failed_runs=$((failed_runs + 1)); fi
  if ((seen == 0)); then
    echo "soak: run $i/$N: no test results (exit $status); see $log" >&2
    tail -n 20 "$log" >&2
    failed_runs=$((failed_runs + 1))
  fi
  printf 'soak: run %d/%d: exit %d, %d results, %d s (%s)\n' "$i" "$N" "$status" "$seen" \
    "$(($(date +%s) - t0))" "$log"
done

echo
printf '%-6s %-6s %s\n' PASS FAIL TEST
bad=0
for name in "${order[@]}"; do
  printf '%-6d %-6d %s\n' "${pass[$name]}" "${fail[$name]}" "$name"
  ((fail[$name] == 0)) || bad=$((bad + 1))
done
echo
printf 'soak: stage %s, %d runs in %d s: %d tests, %d with failures, %d runs not clean; logs in %s\n' \
  "$STAGE" "$N" "$(($(date +%s) - start))" "${#order[@]}" "$bad" "$failed_runs" "$logs"
((bad == 0 && failed_runs == 0))
