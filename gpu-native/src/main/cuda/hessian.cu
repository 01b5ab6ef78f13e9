// H += XᵀX for a tile of calibration tokens, upper triangle only (the Java reference: HessianAccumulator.add,
// float64 throughout). Built by scripts/build-kernels.sh; entry points are extern "C" so that JCuda finds them by name.
//
// Precision: products and sums of up to FLUSH = 8 consecutive tokens in float32 (FMA), then added into float64
// accumulators; the sum across all tokens, across tiles and across calls is float64 (H lives on the device in fp64).
// Why: fp64 throughout would bound us by the H100's fp64 rate (34 TFLOP/s peak without DMMA), out of reach of the
// 25 TFLOP/s target for a hand-written kernel; fp32 throughout would lose ~sqrt(N)·2^-24 of relative accuracy over N
// tokens (and N·2^-24 in the worst case, 1.6e-2 at N = 262144). With 8 terms in fp32 the standard bound of a
// float sum gives, per entry, |ΔH_ij| ≤ γ_9 · Σ_t |x_ti x_tj| ≤ 5.4e-7 · sqrt(H_ii H_jj) (Cauchy–Schwarz), whatever
// N is: inside the 1e-6 relative parity requirement, and one fp64 add per 8 fp32 FMAs keeps the fp32 pipe busy.
// fp16/bf16 inputs are widened to fp32 when staged (exact), so the same bound holds.
//
// Work split: one 128×128 output tile per block, 256 threads, each thread an 8×8 micro-tile strided by 16 (rows
// ty + 16·i, columns tx + 16·j: conflict-free shared reads), KT = 16 tokens staged per step. Only tiles on or above
// the diagonal run (the lower ones return at once), so the work is half of a full GEMM.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#define HT 128
#define KT 16
#define FLUSH 8
#define THREADS 256

__device__ __forceinline__ float widen(const float *x, long i) { return x[i]; }
__device__ __forceinline__ float widen(const __half *x, long i) { return __half2float(x[i]); }
__device__ __forceinline__ float widen(const __nv_bfloat16 *x, long i) { return __bfloat162float(x[i]); }

template <typename T>
__device__ void syrk_upper_tile(const T *__restrict__ x, int tokens, int n, double *__restrict__ h) {
    const int bi = blockIdx.y, bj = blockIdx.x;
    if (bi > bj) return;  // lower-triangle tile: its mirror is computed by block (bj, bi)
    __shared__ float as[KT][HT];
    __shared__ float bs[KT][HT];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int row0 = bi * HT, col0 = bj * HT;

    double acc[8][8];
    float part[8][8];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) { acc[i][j] = 0.0; part[i][j] = 0.0f; }

    for (int t0 = 0; t0 < tokens; t0 += KT) {
        // stage KT tokens × 128 columns of both panels; consecutive threads read consecutive columns (coalesced)
#pragma unroll
        for (int e = 0; e < KT * HT / THREADS; e++) {
            int lin = tid + e * THREADS, k = lin / HT, c = lin % HT, t = t0 + k;
            bool inT = t < tokens;
            as[k][c] = (inT && row0 + c < n) ? widen(x, (long)t * n + row0 + c) : 0.0f;
            bs[k][c] = (inT && col0 + c < n) ? widen(x, (long)t * n + col0 + c) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < KT; k++) {
            float a[8], b[8];
#pragma unroll
            for (int i = 0; i < 8; i++) { a[i] = as[k][ty + 16 * i]; b[i] = bs[k][tx + 16 * i]; }
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) part[i][j] = fmaf(a[i], b[j], part[i][j]);
            if ((k + 1) % FLUSH == 0) {
#pragma unroll
                for (int i = 0; i < 8; i++)
#pragma unroll
                    for (int j = 0; j < 8; j++) { acc[i][j] += (double)part[i][j]; part[i][j] = 0.0f; }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int r = row0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int c = col0 + tx + 16 * j;
            if (r < n && c < n && r <= c) h[(long)r * n + c] += acc[i][j];
        }
    }
}

// x: [tokens][n] row-major; h: [n][n] row-major float64, upper triangle accumulated in place.
// Grid (ceil(n/128), ceil(n/128)), block 256.
extern "C" __global__ void __launch_bounds__(THREADS, 1)
hessian_syrk_f32(const float *x, int tokens, int n, double *h) { syrk_upper_tile(x, tokens, n, h); }

extern "C" __global__ void __launch_bounds__(THREADS, 1)
hessian_syrk_f16(const __half *x, int tokens, int n, double *h) { syrk_upper_tile(x, tokens, n, h); }

extern "C" __global__ void __launch_bounds__(THREADS, 1)
hessian_syrk_bf16(const __nv_bfloat16 *x, int tokens, int n, double *h) { syrk_upper_tile(x, tokens, n, h); }
