// The solver's factorisation on the device: Ũ of core's DampedFactor.upper (H_P + λI = Ũ·Ũᵀ, Ũ = J·chol(J·H_P·J)·J),
// float64, blocked right-looking Cholesky in 64-column panels:
//   chol_gather    A = (H[σ(a)][σ(b)])_{a ≥ b} + λ on the diagonal, σ(a) = perm[n − 1 − a] (processing order
//                  reversed); H stays untouched: it is the saved copy a damping escalation restarts from
//   for each panel k0:
//     chol_diag    the 64 × 64 diagonal block in one CTA, in shared memory; a pivot that is not > 0 and finite sets
//                  *flag (first failing column + 1) and the factorisation stops there (the host re-damps)
//     chol_panel   L21 = A21·L11⁻ᵀ, one thread per row below the block
//     dgemm_tc     A22 −= L21·L21ᵀ on the tensor cores, tiles touching the lower triangle only (dmma_f64.cuh)
//   chol_reverse   Ũ[i][j] = L[n−1−i][n−1−j] (j ≥ i; 0 below), and the diagonal of Ũ for the report's tr(D)
// Only the lower triangle of A is read; the upper one holds whatever the trailing tiles that cross the diagonal left.
// The summation order differs from the CPU's blocked Cholesky: the factor agrees to ~1e-15 relative (checked to
// 1e-12 against core's factor by GpuCheck and src/test/emu), the codes only at rounding ties.
#include "dmma_f64.cuh"

#define CHOL_NB 64

extern "C" __global__ void chol_gather(const double *h, int n, const int *perm, double lambda, double *a) {
    const int j = blockIdx.x * 32 + threadIdx.x % 32;
    const int i = blockIdx.y * 8 + threadIdx.x / 32;
    if (i >= n || j > i) return;
    const long si = perm[n - 1 - i], sj = perm[n - 1 - j];
    const double v = h[si * n + sj];
    a[(long)i * n + j] = i == j ? v + lambda : v;
}

// One CTA of 256 threads on the diagonal block [k0, k0 + b) (b ≤ 64), right-looking inside shared memory.
extern "C" __global__ void __launch_bounds__(256) chol_diag(double *a, int n, int k0, int *flag) {
    __shared__ double s[CHOL_NB][CHOL_NB + 1];
    if (*flag) return;  // an earlier panel failed: nothing left to do this attempt
    const int b = min(CHOL_NB, n - k0), tid = threadIdx.x;
    for (int idx = tid; idx < b * b; idx += blockDim.x) {
        int i = idx / b, j = idx % b;
        s[i][j] = j <= i ? a[(long)(k0 + i) * n + k0 + j] : 0.0;
    }
    __syncthreads();
    for (int j = 0; j < b; j++) {
        const double d = s[j][j];
        if (!(d > 0.0) || !isfinite(d)) {  // uniform: every thread read the same value
            if (tid == 0) *flag = k0 + j + 1;
            return;
        }
        const double ljj = sqrt(d);
        __syncthreads();  // everyone has read s[j][j]
        for (int i = j + 1 + tid; i < b; i += blockDim.x) s[i][j] = s[i][j] / ljj;
        if (tid == 0) s[j][j] = ljj;
        __syncthreads();
        // trailing part of the block: s[i][c] −= s[i][j]·s[c][j], j < c ≤ i
        const int rest = b - j - 1;
        for (int idx = tid; idx < rest * rest; idx += blockDim.x) {
            int i = j + 1 + idx / rest, c = j + 1 + idx % rest;
            if (c <= i) s[i][c] = s[i][c] - s[i][j] * s[c][j];
        }
        __syncthreads();
    }
    for (int idx = tid; idx < b * b; idx += blockDim.x) {
        int i = idx / b, j = idx % b;
        if (j <= i) a[(long)(k0 + i) * n + k0 + j] = s[i][j];
    }
}

// Rows [k0 + b, n): x = A[i, k0:k0+b] solved against L11ᵀ (forward substitution), one thread per row, L11 in shared
// memory, the row in registers.
extern "C" __global__ void __launch_bounds__(128) chol_panel(double *a, int n, int k0, const int *flag) {
    __shared__ double l[CHOL_NB][CHOL_NB + 1];
    if (*flag) return;
    const int b = min(CHOL_NB, n - k0);
    for (int idx = threadIdx.x; idx < b * b; idx += blockDim.x) {
        int i = idx / b, j = idx % b;
        l[i][j] = j <= i ? a[(long)(k0 + i) * n + k0 + j] : 0.0;
    }
    __syncthreads();
    const int r = k0 + b + blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n) return;
    double *row = a + (long)r * n + k0;
    double x[CHOL_NB];
#pragma unroll
    for (int j = 0; j < CHOL_NB; j++) {
        if (j < b) {
            double s = row[j];
#pragma unroll
            for (int q = 0; q < j; q++) s = s - x[q] * l[j][q];
            x[j] = s / l[j][j];
            row[j] = x[j];
        }
    }
}

// A22 −= L21·L21ᵀ (lower tiles), pointers offset by the caller: l21 = A + k2·n + k0, c = A + k2·n + k2.
extern "C" __global__ void __launch_bounds__(DMMA_THREADS)
chol_update(int m, int k, const double *l21, long ld, double *c, const int *flag) {
    const int row0 = blockIdx.y * DMMA_TILE, col0 = blockIdx.x * DMMA_TILE;
    if (*flag || dmma_f64_skip(1, row0, col0)) return;
    __shared__ double smem[DMMA_SMEM_DOUBLES];
    dmma_f64_tile<false, true>(m, m, k, -1.0, l21, ld, l21, ld, c, ld, row0, col0, smem);
}

extern "C" __global__ void chol_reverse(const double *l, int n, double *ut, double *diag) {
    const int j = blockIdx.x * 32 + threadIdx.x % 32;
    const int i = blockIdx.y * 8 + threadIdx.x / 32;
    if (i >= n || j >= n) return;
    const double v = j >= i ? l[(long)(n - 1 - i) * n + (n - 1 - j)] : 0.0;
    ut[(long)i * n + j] = v;
    if (i == j) diag[i] = v;
}
