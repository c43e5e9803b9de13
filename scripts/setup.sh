#!/usr/bin/env bash
# Installs everything lathe needs to build, test and benchmark on a fresh Debian 12 machine.
# Idempotent: packages already present are skipped by apt-get, npm keeps its lock.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(
  cmake ninja-build g++ binutils ccache pkg-config
  clang libfuzzer-14-dev libxml2-utils
  libtorch-dev libonnx-dev libprotobuf-dev protobuf-compiler
  libcli11-dev libyaml-cpp-dev libtbb-dev libgtest-dev nlohmann-json3-dev
  libsentencepiece-dev zlib1g-dev libssl-dev
  libopenblas0-openmp
  python3-torch python3-onnx python3-numpy
  nodejs
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs from some repositories bundles npm and conflicts with Debian's npm package.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# LibTorch takes whatever libblas.so.3 is; the pthread OpenBLAS fights OpenMP at 2 threads.
for lib in libblas.so.3 liblapack.so.3; do
  alt="/usr/lib/x86_64-linux-gnu/openblas-openmp/$lib"
  if [[ -e "$alt" ]]; then
    update-alternatives --set "$lib-x86_64-linux-gnu" "$alt" >/dev/null
  fi
done

# ONNX Runtime for the tests; its install script downloads GPU parts, which fails offline.
if [[ ! -d "$repo_root/tests/node/node_modules/onnxruntime-node" ]]; then
  (cd "$repo_root/tests/node" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
