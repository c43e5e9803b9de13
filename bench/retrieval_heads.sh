#!/usr/bin/env bash
# Retrieval heads, as reported for the retrieval-head issue:
#  - tinystories-retrieval: score table, removal of the top-k heads vs random heads, NIAH grid;
#  - stories260K: its score table and NIAH grid as they are (it barely retrieves);
#  - analysis time on the fixture and on a mid-size random-weight Llama, with the share spent
#    decoding, and decoding with the KV cache vs full re-runs.
# Usage: bench/retrieval_heads.sh [THREADS]
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
threads=${1:-1}
cd "$repo_root"
lathe=build/lathe
[[ -x $lathe && -x build/bench/retrieval_timing ]] || { echo "build first: scripts/build.sh" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== tinystories-retrieval (recipes/retrieval-heads.yaml)"
$lathe run recipes/retrieval-heads.yaml --threads "$threads" --report "$out/fixture/report.json" \
  --set "outputs.0.path=$out/fixture/model.onnx" --set "outputs.1.path=$out/fixture/model"
echo
echo "== stories260K"
cat > "$out/stories.yaml" <<YAML
model: ../shared/models/stories260K/hf
data:
  eval: {tokens: ../shared/data/tinystories-valid/tinystories_valid_head.tok512.u16.bin, max_tokens: 4096}
passes:
  - retrieval-heads: {mode: teacher-forced}
  - retrieval-heads: {mode: greedy}
  - eval: {niah: true}
YAML
$lathe run "$out/stories.yaml" --threads "$threads" --report "$out/stories/report.json"
/usr/bin/python3 - "$out/stories/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for p in report["passes"]:
    if p["name"] == "retrieval-heads":
        print(f"scores ({p['statistics']['mode']}), layers x heads:")
        for layer, row in enumerate(p["statistics"]["scores"]):
            print(f"  {layer}: " + " ".join(f"{s:.2f}" for s in row))
niah = report["metrics"]["eval"]["niah"]
print("NIAH recall by length (rows) and depth (columns", niah["depths"], "):")
for length, row in zip(niah["lengths"], niah["recall_by_length_and_depth"]):
    print(f"  {length:4d}: " + " ".join(f"{r:.2f}" for r in row))
PY
echo
echo "== analysis time"
build/bench/retrieval_timing ../shared --threads "$threads"
