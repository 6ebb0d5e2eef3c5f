#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Runs every CI gate; each prints what it measured. Fails if any gate fails.
set -uo pipefail
cd "$(dirname "$0")"
rc=0
for g in spdx bay0-loc bay0-deps no-panics doc-refs aarch64-check; do
  ./"$g".sh || rc=1
done
exit $rc
