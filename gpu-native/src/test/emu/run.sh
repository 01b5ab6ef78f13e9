#!/usr/bin/env bash
# Desk-check of the CUDA kernels' index math without a GPU: compiles src/main/cuda/*.cu with g++ (C++20) against
# shim.h (one block at a time, blockDim.x std::threads, std::barrier for __syncthreads, static arrays for __shared__,
# the _rn intrinsics as plain IEEE operations) and checks, in main.cpp, each kernel against a host reference:
# hessian (f32, f16) against float64 sums, gptq_block + dgemm_add driven by LatticeSweep's loop bit for bit (and with dgemm_tc: codes) against a
# port of HostSweep, gemv_dense_b2/b4/b8 + gemv_finish (slices, straddling and partial groups, CSR outliers, batch
# 1..8) against float64; the device Cholesky (gather + damping, diagonal blocks, panels, DMMA trailing updates,
# reversal) against a plain host Cholesky to 1e-12, and its failure flag on an indefinite matrix. It says nothing about GPU-only behaviour (rounding of the GPU's own units, occupancy, races
# beyond the barrier model, alignment), which the GPU check covers.
#   gpu-native/src/test/emu/run.sh            (needs g++ ≥ 12, else it says so and exits 0; about 5 s)
# Runs in the gpu-native module's test phase (mvn verify), skipped with -DskipTests.
set -euo pipefail
cxx=${CXX:-g++}
major=$("$cxx" -dumpversion 2>/dev/null | cut -d. -f1 || true)
if [[ -z "$major" || "$major" -lt 12 ]]; then
  echo "kernel emulation skipped: needs g++ >= 12 (found: ${major:-none})"
  exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
cuda="$here/../../main/cuda"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in hessian solver cholesky gemv; do
  sed -e 's/#include <cuda_fp16.h>//; s/#include <cuda_bf16.h>//' \
      -e 's/extern __shared__ float smem\[\];/float *smem = g_dyn_smem;/' "$cuda/$f.cu" > "$tmp/k_$f.h"
done
cp "$here/shim.h" "$here/main.cpp" "$cuda"/*.cuh "$tmp/"
"$cxx" -std=c++20 -O2 -ffp-contract=off -pthread -DBABAI_EMU -o "$tmp/emu" "$tmp/main.cpp"
"$tmp/emu"
"$here/gemv_tc_run.sh"  # the tensor-core GEMV (gpukernels): its own harness, emu_tc.h
