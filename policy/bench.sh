#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Policy loading at scale: a directory of N rooms with vault volumes loaded file by file
# (`load`: each file's volume check reads every other file) and at once (`load_dir`, what
# anchor-vault does at unlock). Printed figures, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
for n in 100 1000; do
  cargo run -q --release -p anchor-policy --example load_scale -- "$n"
done
