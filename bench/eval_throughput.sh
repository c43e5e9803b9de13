#!/usr/bin/env bash
# Evaluation throughput: lathe's executor vs the same forward in Debian's python3-torch, on the
# same model, tokens and thread count, run back to back (and repeated) on this machine.
# Usage: bench/eval_throughput.sh [THREADS] [MAX_TOKENS] [REPEATS]
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
threads=${1:-1}
max_tokens=${2:-40000}
repeats=${3:-3}
model="$repo_root/../shared/models/stories260K/hf"
tokens="$repo_root/../shared/data/tinystories-valid/tinystories_valid_head.tok512.u16.bin"
bench="$repo_root/build/bench/eval_throughput"
[[ -x "$bench" ]] || { echo "build first: scripts/build.sh" >&2; exit 2; }

field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

echo "stories260K, $max_tokens tokens, windows of 512, batch 8, $threads thread(s), best of $repeats"
best_lathe=0
best_torch=0
for ((i = 0; i < repeats; i++)); do
  lathe_run=$("$bench" "$model" "$tokens" --threads "$threads" --max-tokens "$max_tokens")
  torch_run=$(/usr/bin/python3 "$repo_root/bench/torch_reference.py" "$model" "$tokens" --threads "$threads" \
              --max-tokens "$max_tokens")
  best_lathe=$(/usr/bin/python3 -c "print(max($best_lathe, $(echo "$lathe_run" | field tokens_per_second)))")
  best_torch=$(/usr/bin/python3 -c "print(max($best_torch, $(echo "$torch_run" | field tokens_per_second)))")
  echo "  run $((i + 1)): lathe loss $(echo "$lathe_run" | field mean_loss), python loss $(echo "$torch_run" | field mean_loss)"
done
printf "lathe executor   %10.0f tokens/s\n" "$best_lathe"
printf "python3-torch    %10.0f tokens/s\n" "$best_torch"
/usr/bin/python3 -c "print(f'ratio (lathe / python3-torch): {$best_lathe / $best_torch:.2f}')"
