#!/usr/bin/env bash
# Host emulation of issue 16's kernels: gemv_tc.cu (emu_tc.h: a std::thread per CUDA thread, mma.m16n8k16 through a
# warp exchange) against float64 sums, see gemv_tc_emu.cpp; hessian_dmma.cu (shim.h's DMMA emulation) against its
# error contract, see hessian_dmma_emu.cpp. Needs g++ >= 12 (C++20 <barrier>, _Float16), else says so and exits 0.
#   gpu-native/src/test/emu/gemv_tc_run.sh
set -euo pipefail
cxx=${CXX:-g++}
major=$("$cxx" -dumpversion 2>/dev/null | cut -d. -f1 || true)
if [[ -z "$major" || "$major" -lt 12 ]]; then
  echo "gemv_tc emulation skipped: needs g++ >= 12 (found: ${major:-none})"
  exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here/../../main/cuda/gemv_tc.cu" "$tmp/k_gemv_tc.h"
cp "$here/emu_tc.h" "$here/gemv_tc_emu.cpp" "$tmp/"
"$cxx" -std=c++20 -O2 -ffp-contract=off -DBABAI_EMU -pthread -o "$tmp/emu" "$tmp/gemv_tc_emu.cpp"
"$tmp/emu"
sed -e 's/#include <cuda_fp16.h>//; s/#include <cuda_bf16.h>//' "$here/../../main/cuda/hessian_dmma.cu" > "$tmp/k_hessian_dmma.h"
cp "$here/shim.h" "$here/hessian_dmma_emu.cpp" "$here/../../main/cuda/dmma_f64.cuh" "$tmp/"
"$cxx" -std=c++20 -O2 -ffp-contract=off -DBABAI_EMU -pthread -o "$tmp/hemu" "$tmp/hessian_dmma_emu.cpp"
"$tmp/hemu"
