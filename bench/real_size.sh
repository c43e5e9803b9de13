#!/usr/bin/env bash
# Real-size checkpoints: writes a random-weight Llama checkpoint of each real shape
# (bench/random_checkpoint.py, float16, Hugging Face layout, sharded) and times with
# /usr/bin/time -v (wall clock, peak RSS):
#   (a) lathe inspect;
#   (b) a W8A8 recipe: quantize (calibration on 512 tokens) + eval with KL, ONNX and safetensors outputs;
#   (c) a float eval recipe (kl: false), and (c') the same on a float32 copy lathe writes first
#       (no float16 conversion in its clock either), when that copy fits in memory;
#   (d) the same forward in python3-torch (bench/torch_reference.py), with the OpenBLAS kernels
#       lathe used (and also with OpenBLAS's own choice when lathe overrode it);
# on the first 512 tokens of the TinyStories token file, windows of 128, batch 4, THREADS threads;
#   (e) runs the int8 ONNX output in onnxruntime-node (tests/node/run_onnx.js) on 2 x 64 ids and
#       compares it with the float checkpoint in python3-torch, with lathe's loss of its int8
#       safetensors output on the same windows, and position by position with the logits lathe's
#       executor computes for that output (bench/executor_logits); then the test suite's
#       exactness checks at real size: lathe's executor in float64 against the exact evaluation of
#       the graph (tests/python/onnx_exact.py), and ONNX Runtime step by step against the graph
#       (onnx_exact.py --check-runtime) (bench/real_size.py onnx-check).
# Then prints a table and the goals (met / MISSED): inspect < 1 s and < 200 MB; W8A8 of the 1.1B
# (tinyllama) < 180 s and < 2 GB; W8A8 of the 8B (llama3-8b) completes in < 5 GB; forward
# tokens/s lathe / python3-torch >= 1.0, on float32 weights (c') and on the float16 checkpoint (c); for the int8 ONNX: lathe's executor in float64 equals the
# exact evaluation of the graph (1e-5 x the largest |logit|), ONNX Runtime follows the graph at
# every quantized step (1e-4 relative), and the suite's end-to-end bound between ONNX Runtime's
# and lathe's float32 logits (median position 1e-4, at most 25 % of positions beyond 1e-3, x the
# largest |logit|), printed next to lathe float32 vs the exact graph, which shows what two correct
# evaluations of the same int8 graph differ by. MB and GB are decimal.
#
# Usage: bench/real_size.sh [THREADS] [SHAPES...]
#   THREADS default 2; SHAPES default "tinyllama llama3-8b", any of tiny tinyllama llama2-7b llama3-8b
#   (tiny: hidden 256 x 2 layers, for smoke tests).
# Environment: DTYPE=float16|bfloat16 (checkpoint dtype; default float16);
#   ONNX_CHECK=auto|always|never (auto: skip ONNX Runtime when twice the ONNX file's size is more
#   than the available memory); RESULTS=DIR copies the reports, logs and timings there;
#   LATHE=path/to/lathe times another binary (default build/lathe).
# Checkpoints and outputs go to a mktemp -d folder under $TMPDIR or /tmp, one shape at a time,
# deleted on exit: llama3-8b needs about 42 GB of free disk there (16 GB checkpoint, int8 ONNX
# and safetensors outputs), tinyllama about 6 GB. The 8B's float32 copy (32 GB) does not fit a
# 24 GB machine, so python3-torch reads it one layer at a time (--layers-at-a-time, reads untimed)
# whenever the float32 weights would take more than 60 % of the available memory.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
threads=${1:-2}
shift $(($# > 0 ? 1 : 0))
shapes=("$@")
((${#shapes[@]})) || shapes=(tinyllama llama3-8b)
dtype=${DTYPE:-float16}
onnx_check=${ONNX_CHECK:-auto}
python=/usr/bin/python3
lathe=${LATHE:-$repo_root/build/lathe}
executor_logits=$(dirname "$lathe")/bench/executor_logits
tokens=$repo_root/../shared/data/tinystories-valid/tinystories_valid_head.tok512.u16.bin
seq_len=128 batch=4 max_tokens=512  # (b)-(d)
onnx_batch=2 onnx_seq=64            # (e)

[[ -x $lathe && -x $executor_logits ]] || { echo "build first: scripts/build.sh" >&2; exit 2; }
[[ -f $tokens ]] || { echo "missing $tokens" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "needs GNU time at /usr/bin/time (Debian package time)" >&2; exit 2; }
tokens=$(realpath "$tokens")
for shape in "${shapes[@]}"; do
  case $shape in tiny | tinyllama | llama2-7b | llama3-8b) ;;
    *) echo "unknown shape $shape; known: tiny tinyllama llama2-7b llama3-8b" >&2; exit 2 ;;
  esac
done

case $(realpath "${TMPDIR:-/tmp}")/ in  # checkpoints of many GB never go into the repository
  "$repo_root"/*) echo "TMPDIR=$TMPDIR is inside the repository; set it elsewhere" >&2; exit 2 ;;
esac
work=$(mktemp -d "${TMPDIR:-/tmp}/lathe-real-size.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM  # so that the EXIT trap runs on Ctrl-C and kill too
results=$work/results
failures=0

# Percent of all CPUs busy over the next second (/proc/stat: user nice system idle iowait irq softirq steal).
cpu_busy() {
  local a b
  a=$(head -n 1 /proc/stat)
  sleep 1
  b=$(head -n 1 /proc/stat)
  echo "$a $b" | awk '{ idle = ($16 + $17) - ($5 + $6); total = 0
    for (i = 2; i <= 9; i++) total += $(i + 11) - $i
    printf "%.0f\n", (total > 0) ? 100 * (total - idle) / total : 0 }'
}

# Warns when other processes use the CPU right before timing (this machine has few cores).
check_idle() {
  local busy
  busy=$(cpu_busy)
  if ((busy > 25)); then
    echo "  WARNING: the CPUs were ${busy} % busy over the last second before timing; the timings will be slow:"
    ps -eo pcpu,pid,comm --sort=-pcpu | head -n 4 | sed 's/^/    /'
  else
    echo "  CPUs ${busy} % busy over the last second before timing"
  fi
}

# timed STEP COMMAND...: runs COMMAND under /usr/bin/time -v, its stdout and stderr in
# $out/STEP.out and .err, the timing in .time and its exit status in .status; prints one line.
timed() {
  local step=$1 status=0 wall rss
  shift
  /usr/bin/time -v -o "$out/$step.time" "$@" >"$out/$step.out" 2>"$out/$step.err" || status=$?
  echo "$status" >"$out/$step.status"
  read -r wall rss < <(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i] }
    /Maximum resident set size/ { r = $2 * 1024 / 1e6 } END { printf "%.2f %.0f\n", s, r }' "$out/$step.time")
  if ((status == 0)); then
    printf '  %-11s %9.2f s %8.0f MB peak RSS\n' "$step" "$wall" "$rss"
  else
    printf '  %-11s FAILED (exit %d) after %.2f s, %.0f MB peak RSS; end of its stderr:\n' "$step" "$status" "$wall" "$rss"
    tail -n 5 "$out/$step.err" | sed 's/^/    /'
    failures=$((failures + 1))
  fi
  return "$status"
}

skip() {  # skip STEP REASON
  echo "$2" >"$out/$1.skipped"
  echo "  $1: skipped: $2"
}

indent() { sed 's/^/      /' "$@"; }

echo "$("$lathe" --version 2>&1 | tail -n 1), $threads thread(s), shapes: ${shapes[*]}, $dtype checkpoints in $work"
echo "load: $(uptime)"
if awk '{ exit !($1 > 0.5) }' /proc/loadavg; then
  echo "WARNING: 1-minute load average $(cut -d ' ' -f 1 /proc/loadavg) > 0.5: another process may be using the CPU:"
  ps -eo pcpu,pid,comm --sort=-pcpu | head -n 4 | sed 's/^/  /'
fi

for shape in "${shapes[@]}"; do
  dir=$work/$shape
  out=$results/$shape
  mkdir -p "$dir" "$out"
  echo "== $shape"
  case $shape in  # disk for the checkpoint and both outputs, rounded up
    tiny) need_gb=1 shard_args=(--max-shard-bytes 20000000) ;;  # two shards, to exercise the index
    tinyllama) need_gb=6 shard_args=() ;;
    llama2-7b) need_gb=36 shard_args=() ;;
    llama3-8b) need_gb=42 shard_args=() ;;
  esac
  free_gb=$(df --output=avail -B 1000000000 "$work" | tail -n 1 | tr -d ' ')
  if ((free_gb < need_gb)); then
    skip checkpoint "needs about $need_gb GB of free disk in $work, has $free_gb GB"
    continue
  fi
  model=$dir/model
  if ! timed checkpoint "$python" bench/random_checkpoint.py "$model" --shape "$shape" --dtype "$dtype" \
       "${shard_args[@]}"; then
    continue
  fi
  indent "$out/checkpoint.out"
  check_idle

  # (a)
  timed inspect "$lathe" inspect "$model" || true

  # (b) W8A8 and (c) float eval: recipes with absolute paths, written beside the checkpoint
  data="data:
  calibration: {tokens: $tokens, seq_len: $seq_len, batch_size: $batch, max_tokens: $max_tokens}
  eval: {tokens: $tokens, seq_len: $seq_len, batch_size: $batch, max_tokens: $max_tokens}"
  cat >"$dir/w8a8.yaml" <<EOF
model: $model
$data
passes:
  - quantize: {mode: w8a8, max_tokens: $max_tokens}
  - eval: {kl: true}
outputs:
  - {format: onnx, path: $dir/out/model.onnx}
  - {format: safetensors, path: $dir/out/model}
EOF
  cat >"$dir/float.yaml" <<EOF
model: $model
$data
passes:
  - eval: {kl: false}
EOF
  w8a8_ok=0
  timed w8a8 "$lathe" run "$dir/w8a8.yaml" --threads "$threads" --report "$out/w8a8.json" && w8a8_ok=1
  ((w8a8_ok)) && indent "$out/w8a8.out"
  timed float-eval "$lathe" run "$dir/float.yaml" --threads "$threads" --report "$out/float-eval.json" &&
    indent "$out/float-eval.out"

  float32_bytes=$("$python" -c "import json; print(json.load(open('$model/model.safetensors.index.json'))['metadata']['total_size'] * 2)")
  available_bytes=$(awk '/^MemAvailable:/ { printf "%.0f\n", $2 * 1024 }' /proc/meminfo)
  resident=0
  ((float32_bytes * 10 <= available_bytes * 6)) && resident=1
  # (c') the same float eval of a float32 copy that lathe writes: no conversion in lathe's clock
  # either, so it times the same arithmetic as (d). Only when the copy stays in the page cache.
  if ((resident)); then
    cat >"$dir/float32-copy.yaml" <<EOF
model: $model
passes: []
outputs:
  - {format: safetensors, path: $dir/float32, dtype: float32}
EOF
    sed "s|^model: .*|model: $dir/float32|" "$dir/float.yaml" >"$dir/float32.yaml"
    timed float32-copy "$lathe" run "$dir/float32-copy.yaml" --report "$out/float32-copy.json" &&
      check_idle && timed float32-eval "$lathe" run "$dir/float32.yaml" --threads "$threads" \
        --report "$out/float32-eval.json" && indent "$out/float32-eval.out"
    rm -rf "$dir/float32"
  else
    skip float32-eval "a float32 copy ($((float32_bytes / 1000000)) MB) would not stay in 60 % of the available memory"
  fi

  # (d) the same forward in python3-torch, resident in float32 when that fits comfortably, with the
  # OpenBLAS kernels lathe's run used (the report's blas entry) so both time the same arithmetic;
  # when lathe chose them because OpenBLAS fell back to its SSE3 ones, torch is also timed with
  # OpenBLAS's own choice, which is what a torch user on this CPU gets.
  torch_args=()
  if ((!resident)); then
    torch_args=(--layers-at-a-time)
    echo "  torch: float32 weights $((float32_bytes / 1000000)) MB > 60 % of the available $((available_bytes / 1000000)) MB: one layer at a time"
  fi
  read -r kernels chosen_by < <("$python" -c "import json, sys
b = json.load(open(sys.argv[1])).get('blas', {}); print(b.get('kernels', '-'), b.get('kernels_chosen_by', '-'))" \
    "$out/float-eval.json" 2>/dev/null || echo "- -")
  torch_env=()
  [[ $chosen_by == lathe ]] && torch_env=(OPENBLAS_CORETYPE="$kernels")
  echo "  OpenBLAS kernels: $kernels, chosen by $chosen_by"
  check_idle
  timed torch env "${torch_env[@]}" "$python" bench/torch_reference.py "$model" "$tokens" --window "$seq_len" \
    --batch "$batch" --max-tokens "$max_tokens" --threads "$threads" "${torch_args[@]}" && indent "$out/torch.out"
  if [[ $chosen_by == lathe ]]; then
    timed torch-default "$python" bench/torch_reference.py "$model" "$tokens" --window "$seq_len" --batch "$batch" \
      --max-tokens "$max_tokens" --threads "$threads" "${torch_args[@]}" && indent "$out/torch-default.out"
  fi

  # (e) the int8 ONNX file in onnxruntime-node on 2 x 64 ids; lathe's int8 safetensors output on the same windows
  if ((!w8a8_ok)); then
    skip int8-eval "the W8A8 run failed"
    skip onnx "the W8A8 run failed"
  else
    cat >"$dir/int8.yaml" <<EOF
model: $dir/out/model
data:
  eval: {tokens: $tokens, seq_len: $onnx_seq, batch_size: $onnx_batch, max_tokens: $((onnx_batch * onnx_seq))}
passes:
  - eval: {kl: false}
EOF
    int8_args=()
    timed int8-eval "$lathe" run "$dir/int8.yaml" --threads "$threads" --report "$out/int8-eval.json" &&
      int8_args=(--int8-report "$out/int8-eval.json")
    onnx_bytes=$(du -cb "$dir/out/model.onnx"* | tail -n 1 | cut -f 1)  # with any external data file
    available_bytes=$(awk '/^MemAvailable:/ { printf "%.0f\n", $2 * 1024 }' /proc/meminfo)
    if [[ ! -d tests/node/node_modules/onnxruntime-node ]]; then
      skip onnx "onnxruntime-node missing: scripts/setup.sh"
    elif [[ $onnx_check == never ]]; then
      skip onnx "ONNX_CHECK=never"
    elif [[ $onnx_check == auto ]] && ((onnx_bytes * 2 > available_bytes)); then
      skip onnx "ONNX files $((onnx_bytes / 1000000)) MB, twice that is more than the available $((available_bytes / 1000000)) MB (ONNX_CHECK=always runs it)"
    else
      "$python" bench/real_size.py ids "$tokens" "$onnx_batch" "$onnx_seq" "$dir/ids.bin"
      timed executor-logits "$executor_logits" "$dir/out/model" "$dir/ids.bin" "$onnx_batch" "$onnx_seq" \
        "$dir/lathe_logits.bin" --threads "$threads" && int8_args+=(--executor-logits "$dir/lathe_logits.bin")
      # The test suite's exactness checks (tests/core/onnx_runtime.cpp), at real size: the exact
      # evaluation of the graph (tests/python/onnx_exact.py, float64 and int64) against lathe's
      # executor in float64 (its float64 copy must fit: 8 bytes a parameter), and ONNX Runtime one
      # quantized step at a time against the graph given its own inputs.
      # onnx_exact.py keeps every value of the graph in float64: measured 13.5 GB for the 1.1B's
      # 1.5 GB of ONNX, so it runs when ten times the ONNX files fit in the available memory.
      if ((onnx_bytes * 10 < available_bytes)); then
        timed exact "$python" tests/python/onnx_exact.py "$dir/out/model.onnx" "$dir/ids.bin" "$onnx_batch" "$onnx_seq" \
          "$dir/exact_logits.bin" && int8_args+=(--exact-logits "$dir/exact_logits.bin")
        timed onnx-steps "$python" tests/python/onnx_exact.py --check-runtime "$dir/out/model.onnx" "$dir/ids.bin" \
          "$onnx_batch" "$onnx_seq" "$out/runtime-steps.json" && int8_args+=(--runtime-steps "$out/runtime-steps.json")
      else
        skip exact "tests/python/onnx_exact.py needs about ten times the ONNX files ($((onnx_bytes * 10 / 1000000)) MB), more than the available $((available_bytes / 1000000)) MB"
        skip onnx-steps "as exact"
      fi
      if ((onnx_bytes * 8 < available_bytes * 6 / 10)); then
        timed executor-double "$executor_logits" "$dir/out/model" "$dir/ids.bin" "$onnx_batch" "$onnx_seq" \
          "$dir/lathe_double_logits.bin" --threads "$threads" --double &&
          int8_args+=(--executor-double-logits "$dir/lathe_double_logits.bin")
      else
        skip executor-double "its float64 copy ($((onnx_bytes * 8 / 1000000)) MB) does not fit in 60 % of the available memory"
      fi
      if timed onnx node tests/node/run_onnx.js "$dir/out/model.onnx" "$dir/ids.bin" "$onnx_batch" "$onnx_seq" \
           "$dir/onnx_logits.bin" --threads "$threads"; then
        "$python" bench/real_size.py onnx-check "$dir/onnx_logits.bin" "$model" "$tokens" "$onnx_batch" "$onnx_seq" \
          --threads "$threads" --w8a8-report "$out/w8a8.json" "${int8_args[@]}" --result "$out/onnx-logits.json" \
          >"$out/onnx-check.txt" 2>&1 || failures=$((failures + 1))
        indent "$out/onnx-check.txt"
      fi
    fi
  fi
  rm -rf "$dir"  # free the disk before the next shape
done

echo
echo "== $threads thread(s); data: first $max_tokens tokens of $(basename "$tokens"), windows of $seq_len, batch $batch"
"$python" bench/real_size.py table "$results" "${shapes[@]}"
for shape in "${shapes[@]}"; do
  [[ -f $results/$shape/onnx-check.txt ]] && { echo "-- $shape, (e):"; indent "$results/$shape/onnx-check.txt"; }
done
if [[ -n ${RESULTS:-} ]]; then
  mkdir -p "$RESULTS"
  cp -r "$results"/. "$RESULTS"/
  echo "reports, logs and timings copied to $RESULTS"
fi
if ((failures)); then
  echo "$failures command(s) failed; see above"
  exit 1
fi
