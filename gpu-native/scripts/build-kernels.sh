#!/usr/bin/env bash
# Compiles gpu-native/src/main/cuda/*.cu into fatbins (SASS for sm_80 and sm_90, PTX for compute_90 so that newer
# GPUs JIT it) under OUT/org/babaiquant/gpu/kernels/, with a manifest kernels.properties listing every module and its
# entry points. Run by Maven (exec-maven-plugin, generate-resources) at build time only; the backend never runs nvcc.
#
#   build-kernels.sh CUDA_SRC_DIR OUT_DIR
#
# NVCC (environment) names the compiler; default: nvcc on PATH. Without it the build still succeeds: the manifest then
# says status=unavailable with the reason, which the CUDA backend reports. A compile error fails the build.
set -euo pipefail
src=${1:?usage: build-kernels.sh CUDA_SRC_DIR OUT_DIR}
out=${2:?usage: build-kernels.sh CUDA_SRC_DIR OUT_DIR}
dir="$out/org/babaiquant/gpu/kernels"
manifest="$dir/kernels.properties"
nvcc=${NVCC:-nvcc}

# up to date: built by this nvcc setting, and no source (.cu or an included .cuh such as dmma_f64.cuh, nor this script)
# changed since
if [ -f "$manifest" ] && grep -qx "status=built" "$manifest" && grep -qx "nvcc_command=$nvcc" "$manifest" \
   && [ -z "$(find "$src" "$0" -newer "$manifest" -print -quit)" ]; then
  echo "[build-kernels] kernels up to date ($manifest)"
  exit 0
fi
rm -rf "$dir"
mkdir -p "$dir"

if ! command -v "$nvcc" >/dev/null 2>&1; then
  {
    echo "# written by gpu-native/scripts/build-kernels.sh"
    echo "status=unavailable"
    echo "reason=kernels not built (nvcc not found at build time)"
  } > "$manifest"
  echo "[build-kernels] nvcc not found ($nvcc): CUDA kernels NOT built; the CUDA backend will report itself unavailable"
  exit 0
fi

version=$("$nvcc" --version | tail -1)
arch=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90)
modules=()
{
  echo "# written by gpu-native/scripts/build-kernels.sh"
  echo "status=built"
  echo "nvcc_command=$nvcc"
  echo "nvcc=$version"
  echo "arch=sm_80,sm_90,compute_90"
} > "$manifest.tmp"
for cu in "$src"/*.cu; do
  m=$(basename "$cu" .cu)
  # -O3, no fast math: the solver's float64 must round as Java does; FMA contraction stays on (the strip opts out
  # with explicit _rn intrinsics)
  # -Xptxas -warn-spills: a kernel that spills registers says so in the build log
  "$nvcc" -fatbin -O3 -Xptxas -warn-spills "${arch[@]}" -I "$src" -o "$dir/$m.fatbin" "$cu"
  # entry points, from the PTX (the names JCuda looks up; the Java test checks the fatbin holds each of them)
  "$nvcc" -ptx -O3 -arch=compute_90 -I "$src" -o "$dir/$m.ptx.tmp" "$cu"
  entries=$(sed -n 's/^.*\.entry[[:space:]]\+\([A-Za-z_][A-Za-z0-9_]*\).*$/\1/p' "$dir/$m.ptx.tmp" | sort | paste -sd, -)
  rm -f "$dir/$m.ptx.tmp"
  [ -n "$entries" ] || { echo "[build-kernels] no entry points in $cu" >&2; exit 1; }
  echo "entries.$m=$entries" >> "$manifest.tmp"
  modules+=("$m")
  echo "[build-kernels] $m.fatbin ($(wc -c < "$dir/$m.fatbin") bytes): $entries"
done
echo "modules=$(IFS=,; echo "${modules[*]}")" >> "$manifest.tmp"
mv "$manifest.tmp" "$manifest"
