"""The PyTorch reference GPTQ loop, timed on the GPU host beside ours (gpu-check.sh runs it before GpuCheck).

The reference algorithm's structure (IST-DASLab gptq.py, fasterquant): float32, dead columns, damping
0.01 * mean(diag H), Hinv = chol(chol_inverse(chol(H)), upper), blocks of 128 columns, per column the asymmetric
min-max grid of its group (found at the group's first column on W as the lazy updates left it: with g128 and
blocks of 128 that is the error-updated weights), the error fed
forward inside the block, the lazy update W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:] after it. Timed from H and W on
the GPU to Q on the GPU (CUDA events after a warm-up on a small layer), so it does not include host transfers that
our end-to-end figure includes.

    python3 torch_gptq.py [--dry-run]     (--dry-run: CPU, tiny shapes, and a check of the loop against a plain
                                           unblocked float64 statement of the same algorithm; no GPU needed)
Prints one line per layer: "torch-gptq <out>x<in> g128: <seconds> s", then the Llama-2-7B projection.
"""
import sys
import time

import torch


def find_params(x, maxq):
    xmin = torch.minimum(x.min(1).values, torch.zeros(1, device=x.device, dtype=x.dtype))
    xmax = torch.maximum(x.max(1).values, torch.zeros(1, device=x.device, dtype=x.dtype))
    both = (xmin == 0) & (xmax == 0)
    xmin[both], xmax[both] = -1, 1
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    return scale.unsqueeze(1), zero.unsqueeze(1)


def quantize(x, scale, zero, maxq):
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero)


def gptq(W, H, bits=4, groupsize=128, blocksize=128, percdamp=0.01):
    W = W.clone().float()
    H = H.clone().float()
    rows, n = W.shape
    maxq = 2 ** bits - 1
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    idx = torch.arange(n, device=W.device)
    H[idx, idx] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True)
    Q = torch.zeros_like(W)
    scale = zero = None
    for i1 in range(0, n, blocksize):
        i2 = min(i1 + blocksize, n)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if (i1 + i) % groupsize == 0:
                scale, zero = find_params(W[:, (i1 + i):(i1 + i + groupsize)], maxq)
            q = quantize(w.unsqueeze(1), scale, zero, maxq).flatten()
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return Q


def plain(W, H, bits=4, groupsize=128, percdamp=0.01):
    """Unblocked float64 statement of the same algorithm (the dry run's independent check of the blocking)."""
    W = W.clone().double()
    H = H.clone().double()
    n = W.shape[1]
    maxq = 2 ** bits - 1
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(n, dtype=H.dtype)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    for k in range(n):
        if k % groupsize == 0:
            scale, zero = find_params(W[:, k:k + groupsize], maxq)
        q = quantize(W[:, k:k + 1], scale, zero, maxq).flatten()
        Q[:, k] = q
        e = (W[:, k] - q) / U[k, k]
        W[:, k:] -= e.unsqueeze(1) * U[k, k:].unsqueeze(0)
    return Q


def timed(rows, n, tokens=8192):
    g = torch.Generator(device="cuda").manual_seed(rows * 31 + n)
    X = torch.randn(tokens, n, device="cuda", generator=g)
    H = X.T @ X
    del X
    W = 0.02 * torch.randn(rows, n, device="cuda", generator=g)
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    gptq(W, H)
    stop.record()
    torch.cuda.synchronize()
    s = start.elapsed_time(stop) / 1e3
    print(f"torch-gptq {rows}x{n} g128: {s:.3f} s", flush=True)
    return s


def main():
    if "--dry-run" in sys.argv:
        torch.manual_seed(1)
        n, rows = 256, 24
        X = torch.randn(600, n)
        H = X.T @ X
        W = 0.02 * torch.randn(rows, n)
        q1 = gptq(W, H)
        q2 = plain(W, H).float()
        step = (q1 - q2).abs() > 1e-4
        print(f"dry run {rows}x{n} g128: blocked vs plain differ in {int(step.sum())} of {rows * n} values")
        sys.exit(0 if int(step.sum()) <= rows * n * 1e-3 else 1)
    print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    t0 = time.time()
    W = 0.02 * torch.randn(64, 256, device="cuda")
    gptq(W, W.T @ W + torch.eye(256, device="cuda"))  # warm-up: kernels, cuSOLVER handles
    timed(4096, 4096)
    layer = 4 * timed(4096, 4096) + 2 * timed(11008, 4096) + timed(4096, 11008)
    print(f"torch-gptq Llama-2-7B: {layer:.2f} s per decoder layer, x32 = {32 * layer:.1f} s for the 224 linears",
          flush=True)
    timed(8192, 28672, tokens=4096)
    print(f"torch-gptq total wall {time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
