#!/usr/bin/env bash
# Head importance and structured head removal, as reported for the head-removal issue:
#  5. loss vs fraction of heads removed (0-50 %) per importance method (gradient, ablation,
#     entropy, magnitude, random) on stories260K and tinystories-retrieval, and the goal: at
#     25 % removed the best method's loss increase is at most half of random's;
#  6. speed: a random-weight Llama (hidden 512, 8 layers, 16 heads) in ONNX Runtime, unpruned
#     vs half its heads removed (goal >= 1.25x), and lathe's own time to score and prune it;
#  7. NIAH recall and loss of tinystories-retrieval with 25 % / 50 % of its heads removed by the
#     best method of (5), with and without protecting its retrieval heads.
# Usage: bench/head_prune.sh [THREADS]
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
threads=${1:-1}
cd "$repo_root"
bench=build/bench/head_prune_bench
shared=../shared
[[ -x $bench ]] || { echo "build first: scripts/build.sh" >&2; exit 2; }
[[ -d tests/node/node_modules/onnxruntime-node ]] || { echo "onnxruntime-node missing: scripts/setup.sh" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$SECONDS
echo "head removal benchmark, $threads thread(s)"
echo

"$bench" "$shared" quality --threads "$threads" | tee "$out/quality.txt"
best=$(sed -n 's/^best-method-retrieval: //p' "$out/quality.txt")
echo "(section 5: $((SECONDS - start)) s)"
echo
section=$SECONDS

echo "== 6. speed: ONNX Runtime, unpruned vs 50 % of heads removed"
"$bench" "$shared" speed "$out/speed" --threads "$threads"
field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
rounds=3
declare -A mean min
for name in unpruned pruned; do mean[$name]=1e9; min[$name]=1e9; done
for ((round = 1; round <= rounds; round++)); do
  for name in unpruned pruned; do
    run=$(node tests/node/run_onnx.js "$out/speed/$name.onnx" "$out/speed/input.bin" 1 256 "$out/speed/$name.out.bin" \
          --threads "$threads" --bench 20)
    m=$(echo "$run" | field mean_ms)
    n=$(echo "$run" | field min_ms)
    printf "  round %d %-9s mean %8.2f ms  min %8.2f ms\n" "$round" "$name" "$m" "$n"
    mean[$name]=$(/usr/bin/python3 -c "print(min(${mean[$name]}, $m))")
    min[$name]=$(/usr/bin/python3 -c "print(min(${min[$name]}, $n))")
  done
done
echo "batch 1 x 256 tokens, onnxruntime-node, $threads intra-op thread(s), 20 timed runs after 2 warm-ups, best of $rounds rounds:"
printf "unpruned         mean %8.2f ms  min %8.2f ms\n" "${mean[unpruned]}" "${min[unpruned]}"
printf "50 %% removed     mean %8.2f ms  min %8.2f ms\n" "${mean[pruned]}" "${min[pruned]}"
/usr/bin/python3 -c "
r = ${mean[unpruned]} / ${mean[pruned]}; q = ${min[unpruned]} / ${min[pruned]}
print(f'speed-up (unpruned / pruned): mean {r:.2f}x, min {q:.2f}x; goal >= 1.25x (mean): {\"yes\" if r >= 1.25 else \"NO\"}')"
echo "(section 6: $((SECONDS - section)) s)"
echo
section=$SECONDS

"$bench" "$shared" preservation "$best" --threads "$threads"
echo "(section 7: $((SECONDS - section)) s)"
echo
echo "wall time: $((SECONDS - start)) s"
