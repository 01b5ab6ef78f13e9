#!/usr/bin/env bash
# The GPU check of issue 6, one prepared script (run from anywhere; it works in the repository root).
#
#   gpu-native/scripts/gpu-check.sh prepare        on the build machine: builds the jars (nvcc must be there, no GPU
#                                                  needed) and the Java bundle .device/ for the GPU host (jlink JRE +
#                                                  gpu-native, core, jcuda jars; JCuda's natives slimmed to the driver
#                                                  binding so that the tree stays under the 64 MiB sent to the host)
#   gpu-native/scripts/gpu-check.sh [ARGS]         on the GPU host (no Java there), with .device/ carried: nvidia-smi,
#                                                  a PyTorch re-measurement of the baselines when torch is present,
#                                                  then org.babaiquant.gpu.GpuCheck (parity, then the benchmark table)
#   gpu-native/scripts/gpu-check.sh local [ARGS]   here, after `mvn package`: the same main class with the local java;
#                                                  without a GPU it prints "CUDA unavailable: <reason>" and exits 3
#
# ARGS go to GpuCheck: --skip-bench, --seed S, --device N, --budget SECONDS (default 420: benchmarks that would not
# finish before it are skipped, so the run ends before the 450 s timeout). Logs go to $OUT (default ./gpu-check-out):
# gpu-check.log, gpu-check-table.txt, gpu-check.stdout, nvidia-smi.txt, torch-baseline.txt.
# Exit status: GpuCheck's (0 parity passed, 1 parity failed, 2 usage, 3 CUDA unavailable, 4 error), 124 timeout.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/gpu-check-out}
mode=${1:-run}

case "$mode" in
  prepare)
    set -e
    mvn -o -B -ntp -q package -pl gpu-native -am -DskipTests
    grep -qx "status=built" gpu-native/target/classes/org/babaiquant/gpu/kernels/kernels.properties \
      || { echo "kernels were not built (no nvcc?): nothing useful to run on a GPU" >&2; exit 1; }
    lib=gpu-native/target/device-lib
    rm -rf "$lib" && mkdir -p "$lib"
    cp gpu-native/target/babai-quant-gpu-native-*.jar "$lib/"
    cp gpu-native/target/lib/*.jar "$lib/"
    # keep only libJCudaDriver in the natives jar (the runtime, NVRTC and PTX-compiler bindings are 25 MB unused)
    natives=$(ls "$lib"/jcuda-natives-*.jar)
    tmp=$(mktemp -d)
    (cd "$tmp" && jar xf "$root/$natives" && find lib -type f ! -name 'libJCudaDriver-*' -delete \
      && rm -f "$root/$natives" && jar cf "$root/$natives" lib)
    rm -rf "$tmp"
    shared=${SHARED:-$root/../shared}
    "$shared/gpu/make-device-bundle.sh" "$lib"
    echo "prepared: run on the GPU host with carry [\".device\"]: bash gpu-native/scripts/gpu-check.sh"
    ;;
  local)
    shift
    exec java -cp "gpu-native/target/classes:gpu-native/target/lib/*" org.babaiquant.gpu.GpuCheck --out "$out" \
      --data data/minilm-l6-v2 "$@"
    ;;
  *)
    [ "$mode" = run ] && shift
    java=.device/jre/bin/java
    if [ ! -x "$java" ]; then
      echo "no .device/ bundle here: run 'gpu-native/scripts/gpu-check.sh prepare' on the build machine and carry .device" >&2
      exit 2
    fi
    mkdir -p "$out"
    { date -u; nvidia-smi; } > "$out/nvidia-smi.txt" 2>&1 || true
    if command -v python3 >/dev/null && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
      timeout 90 python3 - > "$out/torch-baseline.txt" 2>&1 <<'PY' || echo "torch baseline: failed or timed out" >> "$out/torch-baseline.txt"
import torch
torch.backends.cuda.matmul.allow_tf32 = False

def seconds(f, reps):
    f()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        f()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / reps / 1e3

print(torch.__version__, torch.cuda.get_device_name(0))
w = torch.randn(28672, 8192, device="cuda", dtype=torch.float16)
v = torch.randn(8192, 1, device="cuda", dtype=torch.float16)
print(f"torch fp16 GEMV 28672x8192 batch 1: {seconds(lambda: w @ v, 200) * 1e6:.1f} us")
del w, v
x = torch.randn(262144, 4096, device="cuda")
t = seconds(lambda: x.T @ x, 3)
print(f"torch fp32 X^T X 262144x4096: {t:.3f} s = {2 * 262144 * 4096 ** 2 / t / 1e12:.1f} TFLOP/s")
del x
a = torch.empty(1 << 28, device="cuda")
b = torch.empty_like(a)
t = seconds(lambda: b.copy_(a), 20)
print(f"torch device-to-device copy: {2 * a.numel() * 4 / t / 1e12:.2f} TB/s (read + write)")
PY
    else
      echo "torch with CUDA not available: baselines not re-measured" > "$out/torch-baseline.txt"
    fi
    cat "$out/torch-baseline.txt"
    # ---- serving + Hessian peers (issue 16, gpukernels; ServingCheck is the Java half, <= 90 s inside GpuCheck) ----
    if command -v python3 >/dev/null && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
      timeout 60 python3 gpu-native/scripts/serving_peers.py > "$out/serving-peers.txt" 2>&1 \
        || echo "serving peers: failed or timed out" >> "$out/serving-peers.txt"
    else
      echo "torch with CUDA not available: serving peers not measured" > "$out/serving-peers.txt"
    fi
    cat "$out/serving-peers.txt"
    # ---- end of the serving section ----
    timeout 450 "$java" -Xmx48g -cp '.device/lib/*' org.babaiquant.gpu.GpuCheck --out "$out" \
      --data data/minilm-l6-v2 "$@" 2>&1 | tee "$out/gpu-check.stdout"
    exit "${PIPESTATUS[0]}"
    ;;
esac
