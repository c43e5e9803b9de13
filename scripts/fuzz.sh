#!/usr/bin/env bash
# Fuzzes lathe's readers of untrusted bytes with libFuzzer (clang, ASan + UBSan).
#
#   scripts/fuzz.sh [SECONDS_PER_HARNESS] [HARNESS ...]    default: 20 s each, every harness
#
# Builds fuzz/ in build-fuzz/ (after lathe's own build in build/, whose pass registry the recipe
# harness links), seeds each corpus from the real files in ../shared and the recipes, replays the
# regression inputs in fuzz/regressions/<harness>/ (every finding becomes one), fuzzes, and
# prints executions and executions per second. A finding is saved under build-fuzz/findings/
# and makes the script fail.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
seconds=${1:-20}
shift || true
shared=$(cd "$repo_root/../shared" && pwd)
build=build-fuzz

export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$repo_root}
if [[ ! -f $build/build.ninja ]]; then
  cmake -S fuzz -B $build -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DLATHE_MAIN_BUILD="$repo_root/build" >/dev/null
fi
cmake --build $build -j "$(nproc)" >/dev/null

harnesses=("$@")
if [[ ${#harnesses[@]} -eq 0 ]]; then
  harnesses=(safetensors safetensors_index config pickle sentencepiece vocab zip recipe)
fi

# Seeds: the real files, or small valid files cut from them (fuzz/cut_seed.py) where the real
# ones are a megabyte, so that an execution stays fast.
seed() {
  local name=$1 corpus=$build/corpus/$1
  mkdir -p "$corpus"
  case $name in
    safetensors)
      for model in stories260K/hf makemore-names-gpt/hf tinystories-retrieval; do
        python3 fuzz/cut_seed.py safetensors "$shared/models/$model/model.safetensors" "$corpus/$(echo "$model" | tr / _).safetensors"
      done
      ;;
    safetensors_index)
      printf '{"metadata": {"total_size": 32}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}' >"$corpus/index.json"
      ;;
    config)
      for model in stories260K/hf makemore-names-gpt/hf tinystories-retrieval; do
        cp "$shared/models/$model/config.json" "$corpus/$(echo "$model" | tr / _).json"
      done
      ;;
    pickle)
      python3 -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = [n for n in z.namelist() if n.endswith("data.pkl")][0]
    open(sys.argv[2], "wb").write(z.read(name))' "$shared/models/makemore-names-gpt/original/model.pt" "$corpus/data.pkl"
      ;;
    sentencepiece)
      cp "$shared/models/stories260K/hf/tokenizer.model" "$corpus/stories260K.model"
      ;;
    vocab)
      cp "$shared/models/makemore-names-gpt/hf/vocab.json" "$corpus/vocab.json"
      ;;
    recipe)
      cp recipes/*.yaml "$corpus/"
      ;;
    zip)
      python3 fuzz/cut_seed.py zip "$shared/models/makemore-names-gpt/original/model.pt" "$corpus/model.pt"
      ;;
    *)
      echo "fuzz.sh: unknown harness $name" >&2
      return 2
      ;;
  esac
}

status=0
mkdir -p $build/findings $build/logs
printf '%-18s %12s %10s %8s  %s\n' harness executions exec/s seconds result
for name in "${harnesses[@]}"; do
  seed "$name"
  binary=$build/${name}_fuzzer
  regressions=fuzz/regressions/$name
  if [[ -d $regressions ]] && compgen -G "$regressions/*" >/dev/null; then
    if ! timeout --kill-after=10 120 "$binary" -runs=1 "$regressions"/* >"$build/logs/$name-regressions.log" 2>&1; then
      echo "fuzz.sh: $name fails on a regression input; see $build/logs/$name-regressions.log" >&2
      status=1
    fi
  fi
  log=$build/logs/$name.log
  result=ok
  # The recipe harness carries LibTorch (the pass registry): about 300 MB before the first input.
  rss_limit=1024
  [[ $name == recipe ]] && rss_limit=2048
  # timeout: a harness whose out-of-memory report does not end it (seen when the input loops
  # inside a library) must not hold up the job.
  if ! timeout --kill-after=10 $((seconds + 120)) \
      "$binary" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=$rss_limit -timeout=10 \
      -artifact_prefix="$build/findings/$name-" "$build/corpus/$name" >"$log" 2>&1; then
    result="FINDING (see $log)"
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  printf '%-18s %12s %10s %8s  %s\n' "$name" "${runs:-?}" "${rate:-?}" "$seconds" "$result"
done
exit $status
