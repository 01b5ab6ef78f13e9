// Hessian H += XᵀX on fp64 tensor cores (DMMA m8n8k4 through dmma_f64.cuh, the tile shared with the solver): the
// activations (float32, float16 or bfloat16) are widened to float64 first (hessian_widen_*: exact), so every product
// x_ti·x_tj is exact and only the float64 sums round: per entry, after N tokens in L launches,
// |ΔH_ij| ≤ (N + L)·2⁻⁵³·Σ_t|x_ti·x_tj| (no flush rule, no float32 partials). CPU twin and contract test:
// org.babaiquant.gpu.HessianTwin / HessianTwinTest; GPU check: ServingCheck (vs float64 sums) and GpuCheck's Hessian
// cases (vs the CPU backend).
//
// H is n×n row-major float64 on the device; only 64×64 tiles touching the upper triangle run (tiles crossing the
// diagonal are computed whole); blockIdx.x enumerates those tiles row by row.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include "dmma_f64.cuh"

// y[i] = (double) x[i], i < count. Grid ceil(count/256) (x: at most 2^31·256 values), block 256.
extern "C" __global__ void __launch_bounds__(256) hessian_widen_f32(const float *x, long count, double *y) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) y[i] = (double)x[i];
}
extern "C" __global__ void __launch_bounds__(256) hessian_widen_f16(const __half *x, long count, double *y) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) y[i] = (double)__half2float(x[i]);
}
extern "C" __global__ void __launch_bounds__(256) hessian_widen_bf16(const __nv_bfloat16 *x, long count, double *y) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) y[i] = (double)__bfloat162float(x[i]);
}

// H[upper tiles] += Xᵀ·X, X row-major tokens × n float64. Grid nt·(nt+1)/2 with nt = ceil(n/64), block DMMA_THREADS.
extern "C" __global__ void __launch_bounds__(DMMA_THREADS) hessian_dmma(const double *x, int tokens, int n, double *h) {
    __shared__ double smem[DMMA_SMEM_DOUBLES];
    const int nt = (n + DMMA_TILE - 1) / DMMA_TILE;
    int p = blockIdx.x, bi = 0;
    while (p >= nt - bi) {  // row bi of the upper triangle holds nt − bi tiles
        p -= nt - bi;
        bi++;
    }
    const int bj = bi + p;
    dmma_f64_tile<true, false>(n, n, tokens, 1.0, x, n, x, n, h, n, bi * DMMA_TILE, bj * DMMA_TILE, smem);
}
