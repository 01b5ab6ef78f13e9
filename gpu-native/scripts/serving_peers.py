"""PyTorch peers of the serving and Hessian benchmarks (issue 16), measured in the GPU check's run: cuBLAS fp16 GEMV,
torch's int4 kernel (_weight_int4pack_mm, "tinygemm"), X^T X in fp32 (TF32 off) and bf16. CUDA events, median of reps.
Each line: 'peer <work>: <time>' or 'peer <work>: unavailable: <why>'. Called by gpu-check.sh (serving section)."""
import sys

import torch

torch.backends.cuda.matmul.allow_tf32 = False


def seconds(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / 1e3)
    times.sort()
    return times[len(times) // 2]


def peer(work, fn):
    try:
        print(f"peer {work}: {fn()}", flush=True)
    except Exception as e:  # one missing op must not hide the others
        print(f"peer {work}: unavailable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)


print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}", flush=True)
for out_f, in_f in ((28672, 8192), (4096, 4096), (11008, 4096)):
    w = torch.randn(out_f, in_f, device="cuda", dtype=torch.float16)
    for b in ((1, 8, 16) if out_f == 28672 else (1,)):
        x = torch.randn(b, in_f, device="cuda", dtype=torch.float16)
        peer(f"cuBLAS fp16 {out_f}x{in_f} batch {b}", lambda: f"{seconds(lambda: x @ w.t(), 200) * 1e6:.1f} us")

    def int4(b, out_f=out_f, in_f=in_f):
        q = torch.randint(0, 16, (out_f, in_f), dtype=torch.int32, device="cuda")
        packed_u8 = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)
        wp = torch._convert_weight_to_int4pack(packed_u8, 8)
        sz = torch.rand(in_f // 128, out_f, 2, device="cuda", dtype=torch.bfloat16)
        xb = torch.randn(b, in_f, device="cuda", dtype=torch.bfloat16)
        return f"{seconds(lambda: torch._weight_int4pack_mm(xb, wp, 128, sz), 200) * 1e6:.1f} us"

    for b in ((1, 8, 16) if out_f == 28672 else (1, 8)):
        peer(f"torch _weight_int4pack_mm int4 g128 {out_f}x{in_f} batch {b}", lambda b=b: int4(b))
    del w
    torch.cuda.empty_cache()

x = torch.randn(262144, 4096, device="cuda")
peer("XtX 262144x4096 fp32 (TF32 off)", lambda: f"{seconds(lambda: x.t() @ x, 5) * 1e3:.1f} ms")
xb = x.to(torch.bfloat16)
peer("XtX 262144x4096 bf16 (fp32 accumulate, bf16 result)", lambda: f"{seconds(lambda: xb.t() @ xb, 10) * 1e3:.1f} ms")
try:
    # the contract's reference on a 4096-token slice: how far torch's own fp32/bf16 products are from float64 sums
    s = x[:4096].double()
    ref = s.t() @ s
    scale = torch.sqrt(torch.outer(ref.diagonal(), ref.diagonal()))
    for name, got in (("fp32", (x[:4096].t() @ x[:4096]).double()), ("bf16", (xb[:4096].t() @ xb[:4096]).double())):
        exact = (xb[:4096].double().t() @ xb[:4096].double()) if name == "bf16" else ref
        print(f"peer XtX 4096x4096 {name}: max |dH|/sqrt(Hii*Hjj) vs float64 of its own inputs "
              f"{((got - exact).abs() / scale).max().item():.2e}", flush=True)
except Exception as e:
    print(f"peer XtX error figures: unavailable: {e}", flush=True)
sys.exit(0)
