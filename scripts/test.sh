#!/usr/bin/env bash
# Builds lathe and runs the whole test suite: format readers (also under ASan and UBSan),
# the IR, executor and writers against the real checkpoints, the command line, and 20 s of
# fuzzing for each reader of untrusted bytes (scripts/fuzz.sh).
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 900
cd "$repo_root"
bash scripts/fuzz.sh 20
