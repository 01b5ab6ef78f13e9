#!/usr/bin/env bash
# The GPU check of issue 6, one prepared script (run from anywhere; it works in the repository root).
#
#   gpu-native/scripts/gpu-check.sh prepare        on the build machine: builds the jars (nvcc must be there, no GPU
#                                                  needed) and the Java bundle .device/ for the GPU host (jlink JRE +
#                                                  gpu-native, core, jcuda jars; JCuda's natives slimmed to the driver
#                                                  binding so that the tree stays under the 64 MiB sent to the host)
#   gpu-native/scripts/gpu-check.sh [ARGS]         on the GPU host (no Java there), with .device/ carried: nvidia-smi,
#                                                  a PyTorch re-measurement of the baselines and the PyTorch reference
#                                                  GPTQ loop (torch_gptq.py) when torch is present, quantize-layer
#                                                  --backend cuda vs --backend cpu on the MiniLM linears and a 4096²
#                                                  layer (outputs compared), then org.babaiquant.gpu.GpuCheck (parity,
#                                                  then the benchmark table); the solver table is printed last
#   gpu-native/scripts/gpu-check.sh local [ARGS]   here, after `mvn package`: the same main class with the local java;
#                                                  without a GPU it prints "CUDA unavailable: <reason>" and exits 3
#
# ARGS go to GpuCheck: --skip-bench, --seed S, --device N, --budget SECONDS (default 420: benchmarks that would not
# finish before it are skipped, so the run ends before the 450 s timeout). Logs go to $OUT (default ./gpu-check-out):
# gpu-check.log, gpu-check-table.txt, gpu-check.stdout, nvidia-smi.txt, torch-baseline.txt, torch-gptq.txt,
# layer-compare.txt. Time: at most 45 + 60 (serving peers) + 50 + 75 + 330 s of timeouts: 560 s; the solver's part
# (PyTorch loop, layer comparison, solver parity and benchmarks inside GpuCheck) about 4.5 minutes of it.
#   gpu-native/scripts/gpu-check.sh dry-run        here, without a GPU: the layer generator and the comparison of two
#                                                  quantize-layer outputs (cpu vs cpu), torch_gptq.py's syntax
# Exit status: GpuCheck's (0 parity passed, 1 parity failed, 2 usage, 3 CUDA unavailable, 4 error), 124 timeout.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/gpu-check-out}
mode=${1:-run}

# quantize-layer --backend cuda and --backend cpu on the same inputs, outputs compared: codes, scales, zeros and dequant
# byte for byte; rows.npy (float64 loss, bound, clipped per row) to 1e-9 relative (the loss sums' last bits follow the
# summation order), clipped exactly; report.json's fields likewise except seconds and the backend's description.
#   LAYER_BACKENDS="cuda cpu" layer_compare JAVA_CMD DIR   (DIR receives the inputs and outputs; lines to stdout)
layer_compare() {
  local javacmd=$1 dir=$2 minilm=data/minilm-l6-v2 status=0 got=${LAYER_BACKENDS%% *} ref=${LAYER_BACKENDS#* }
  local -
  set -f  # $javacmd holds a class path pattern (.device/lib/*) that java expands, not the shell
  mkdir -p "$dir"
  python3 - "$dir" <<'PY' || { echo "layer-compare: cannot write the 4096x4096 layer (numpy missing?)"; return 1; }
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(4096)
x = rng.standard_normal((8192, 4096), dtype=np.float32)
x *= np.exp(0.7 * rng.uniform(-1, 1, 4096)).astype(np.float32)
np.save(f"{d}/w4096.npy", (0.02 * rng.standard_normal((4096, 4096))).astype(np.float32))
np.save(f"{d}/h4096.npy", x.astype(np.float64).T @ x.astype(np.float64))
PY
  local cases=()
  for l in q_proj:attn_in k_proj:attn_in v_proj:attn_in o_proj:o_proj_in ffn_up:ffn_up_in ffn_down:ffn_down_in; do
    cases+=("${l%%:*}|--weight $minilm/weights/layer0_${l%%:*}.weight.npy --calib $minilm/activations/layer0_${l#*:}.calib.npy --bits 4 --group-size 128 --order act-order")
  done
  cases+=("4096x4096|--weight $dir/w4096.npy --hessian $dir/h4096.npy --bits 4 --group-size 128")
  for c in "${cases[@]}"; do
    local name=${c%%|*} args=${c#*|} ok=1
    for b in "$got" "$ref"; do
      # shellcheck disable=SC2086
      $javacmd quantize-layer $args --backend "$b" --overwrite --out "$dir/$name.$b" > "$dir/$name.$b.log" 2>&1 \
        || { echo "layer-compare $name: --backend $b failed: $(tail -1 "$dir/$name.$b.log")"; ok=0; }
    done
    if [ $ok = 1 ]; then
      python3 - "$dir/$name.$ref" "$dir/$name.$got" "$name" <<'PY' || ok=0
import json, sys, numpy as np
a, b, name = sys.argv[1:4]
bad = []
for f in ("codes.npy", "scales.npy", "zeros.npy", "dequant.npy"):
    if open(f"{a}/{f}", "rb").read() != open(f"{b}/{f}", "rb").read():
        ca, cb = np.load(f"{a}/{f}"), np.load(f"{b}/{f}")
        bad.append(f"{f} differs in {int((ca != cb).sum())} of {ca.size}")
ra, rb = np.load(f"{a}/rows.npy"), np.load(f"{b}/rows.npy")
rel = np.abs(ra[:, :2] - rb[:, :2]) / np.maximum(np.abs(ra[:, :2]), 1e-300)
if rel.max() > 1e-9 or (ra[:, 2] != rb[:, 2]).any():
    bad.append(f"rows.npy: loss/bound rel diff {rel.max():.1e}, clipped differ in {int((ra[:, 2] != rb[:, 2]).sum())} rows")
ja, jb = json.load(open(f"{a}/report.json")), json.load(open(f"{b}/report.json"))
for k in sorted(set(ja) | set(jb)):
    if k in ("seconds", "backend"):
        continue
    va, vb = ja.get(k), jb.get(k)
    close = va == vb or (isinstance(va, (int, float)) and isinstance(vb, (int, float))
                         and abs(va - vb) <= 1e-9 * max(abs(va), abs(vb)))
    if not close and not (isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb)
                          and np.allclose(va, vb, rtol=1e-9, atol=0)):
        bad.append(f"report.json {k}: {va if not isinstance(va, list) else '[...]'} vs {vb if not isinstance(vb, list) else '[...]'}")
print(f"layer-compare {name}: " + ("PASS (codes, scales, zeros, dequant identical; rows and report within 1e-9)" if not bad else "FAIL " + "; ".join(bad)))
sys.exit(1 if bad else 0)
PY
    fi
    [ $ok = 1 ] || status=1
    # the timings, from the commands' own summary lines
    echo "layer-compare $name seconds: $got $(grep -o '[0-9.]*s$' "$dir/$name.$got.log" | tail -1) $ref $(grep -o '[0-9.]*s$' "$dir/$name.$ref.log" | tail -1)"
  done
  return $status
}

case "$mode" in
  dry-run)
    # what can be checked without a GPU: the generator and the comparison (both outputs from --backend cpu), and
    # torch_gptq.py's syntax (torch is not installed here)
    set -e
    python3 -m py_compile gpu-native/scripts/torch_gptq.py
    cp=$(ls spark-jobs/target/babai-quant-spark-jobs-*-SNAPSHOT.jar | head -1)
    jars=$(find ~/.m2/repository/info/picocli ~/.m2/repository/org/jcuda ~/.m2/repository/com/fasterxml/jackson/core/jackson-core -name '*.jar' | tr '\n' ':')
    java_cmd="java -cp core/target/classes:gpu-native/target/classes:$cp:$jars org.babaiquant.cli.LayerMain"
    # no GPU here: 'auto' takes the CPU, so this checks the commands, the generator and the comparison, not CUDA
    LAYER_BACKENDS="auto cpu" layer_compare "$java_cmd" "$out/layers"
    ;;
  prepare)
    set -e
    mvn -o -B -ntp -q package -pl gpu-native,spark-jobs -am -DskipTests
    grep -qx "status=built" gpu-native/target/classes/org/babaiquant/gpu/kernels/kernels.properties \
      || { echo "kernels were not built (no nvcc?): nothing useful to run on a GPU" >&2; exit 1; }
    lib=gpu-native/target/device-lib
    rm -rf "$lib" && mkdir -p "$lib"
    cp gpu-native/target/babai-quant-gpu-native-*.jar "$lib/"
    cp gpu-native/target/lib/*.jar "$lib/"
    # quantize-layer without Spark (org.babaiquant.cli.LayerMain): the CLI classes (the unshaded jar, 0.4 MB) + picocli
    cp spark-jobs/target/babai-quant-spark-jobs-*-SNAPSHOT.jar "$lib/"
    picocli=$(sed -n 's:.*<picocli.version>\(.*\)</picocli.version>.*:\1:p' pom.xml)
    cp "$HOME/.m2/repository/info/picocli/picocli/$picocli/picocli-$picocli.jar" "$lib/"
    # keep only libJCudaDriver in the natives jar (the runtime, NVRTC and PTX-compiler bindings are 25 MB unused)
    natives=$(ls "$lib"/jcuda-natives-*.jar)
    tmp=$(mktemp -d)
    (cd "$tmp" && jar xf "$root/$natives" && find lib -type f ! -name 'libJCudaDriver-*' -delete \
      && rm -f "$root/$natives" && jar cf "$root/$natives" lib)
    rm -rf "$tmp"
    shared=${SHARED:-$root/../shared}
    JLINK_MODULES=java.base,java.logging,java.management,jdk.unsupported \
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
      timeout 45 python3 - > "$out/torch-baseline.txt" 2>&1 <<'PY' || echo "torch baseline: failed or timed out" >> "$out/torch-baseline.txt"
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
    # ---- solver: the PyTorch reference GPTQ loop, then quantize-layer cuda vs cpu --------------------------------
    if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
      timeout 50 python3 gpu-native/scripts/torch_gptq.py > "$out/torch-gptq.txt" 2>&1 \
        || echo "torch-gptq: failed or timed out (rows above were measured)" >> "$out/torch-gptq.txt"
    else
      echo "torch with CUDA not available: reference GPTQ loop not timed" > "$out/torch-gptq.txt"
    fi
    cat "$out/torch-gptq.txt"
    LAYER_BACKENDS="cuda cpu" timeout 75 bash -c "$(declare -f layer_compare); layer_compare '$java -Xmx16g -cp .device/lib/* org.babaiquant.cli.LayerMain' '$out/layers'" \
      > "$out/layer-compare.txt" 2>&1; lc=$?
    [ $lc = 124 ] && echo "layer-compare: timed out after 75 s (lines above were done)" >> "$out/layer-compare.txt"
    cat "$out/layer-compare.txt"
    timeout 330 "$java" -Xmx48g -cp '.device/lib/*' org.babaiquant.gpu.GpuCheck --out "$out" \
      --data data/minilm-l6-v2 --budget 310 "$@" 2>&1 | tee "$out/gpu-check.stdout"
    status=${PIPESTATUS[0]}
    # the solver's table last: ours (GpuCheck's solver rows) beside the PyTorch loop measured in this run
    echo
    echo "== solver: ours vs the PyTorch reference GPTQ loop, same host, same run ($(date -u +%F)) =="
    grep -E '^(solver|  same layer)' "$out/gpu-check-table.txt" 2>/dev/null || echo "(no solver rows: see gpu-check.log)"
    grep -E '^torch-gptq' "$out/torch-gptq.txt" || echo "(no PyTorch rows: see torch-gptq.txt)"
    grep -E '^layer-compare' "$out/layer-compare.txt" || true
    [ $lc = 0 ] || [ "$status" != 0 ] || status=1
    exit "$status"
    ;;
esac
