#!/usr/bin/env bash
# Outlier-free INT8: quality table (5), ONNX sizes (6) and ONNX Runtime speed (7); see bench/int8.py.
# Usage: bench/int8.sh [THREADS] [EVAL_TOKENS] [FINETUNE_STEPS] [SECTIONS: quality,size,speed,bits]
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
[[ -x build/lathe && -x build/bench/random_llama_checkpoint ]] || { echo "build first: scripts/build.sh" >&2; exit 2; }
[[ -d tests/node/node_modules/onnxruntime-node ]] || { echo "onnxruntime-node missing: scripts/setup.sh" >&2; exit 2; }
exec /usr/bin/python3 bench/int8.py "$@"
