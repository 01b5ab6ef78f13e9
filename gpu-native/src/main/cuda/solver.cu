// The GPTQ column sweep (Babai's nearest plane, back to front) on the GPU, float64 throughout. The Java reference is
// core's GptqSolver.Sweep; the host-side emulation of exactly these two kernels is org.babaiquant.gpu.HostSweep, and
// the loop that drives them (blocks of bs columns, strips of STRIP columns, lazy updates) is
// org.babaiquant.gpu.LatticeSweep. W is held in processing order, row-major m × n; U (GPTQ's Hinv: upper Cholesky
// factor of the permuted damped H⁻¹) row-major n × n, computed on the host by core's DampedFactor.
//
// Why float64: the codes must equal the CPU solver's (ties aside). The strip below rounds exactly as the Java loop
// does (explicit _rn intrinsics: no FMA contraction), so the only differences come from the summation order of the
// trailing products; in float32 they would flip codes at a rate far above the 1e-4 allowed.

#include "dmma_f64.cuh"

#define STRIP 32

// One strip of columns [c1, c1 + width) (width ≤ STRIP) of the block that starts at i1, all rows in parallel, one
// thread per row: for each column k, q_k = s·(clamp(rint(w̃_k/s) + z) − z), e_k = (w̃_k − q_k)/U_kk,
// loss += e_k², bound += ¼ s²/U_kk², then w̃_j −= e_k·U_kj for the strip's later columns (kept in registers).
// Writes q into W, the code into codes, e into E[:, c1 − i1 + k] (E is m × bs, leading dimension lde).
extern "C" __global__ void gptq_strip(double *w, int *codes, int ldw, double *e_out, int lde, const double *u, int n,
                                      const double *scale, const double *zero, int groups, const int *group_of,
                                      int m, int i1, int c1, int width, int clip, int maxq,
                                      double *loss, double *bound, int *clipped) {
    __shared__ double us[STRIP][STRIP + 1];  // strictly upper part of the strip's U block, zero elsewhere
    __shared__ double diag[STRIP];
    for (int idx = threadIdx.x; idx < STRIP * STRIP; idx += blockDim.x) {
        int i = idx / STRIP, j = idx % STRIP;
        us[i][j] = (i < width && j < width && j > i) ? u[(long)(c1 + i) * n + c1 + j] : 0.0;
        if (j == 0) diag[i] = i < width ? u[(long)(c1 + i) * n + c1 + i] : 1.0;
    }
    __syncthreads();
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= m) return;

    double x[STRIP];
    const long row = (long)r * ldw;
#pragma unroll
    for (int j = 0; j < STRIP; j++) x[j] = j < width ? w[row + c1 + j] : 0.0;
    double l = loss[r], b = bound[r];
    int cl = clipped[r];
#pragma unroll
    for (int i = 0; i < STRIP; i++) {
        if (i < width) {
            int g = group_of[c1 + i];
            double s = scale[(long)r * groups + g], z = zero[(long)r * groups + g], d = diag[i];
            double c = __dadd_rn(rint(__ddiv_rn(x[i], s)), z);
            if (clip && (c < 0.0 || c > maxq)) {
                c = fmin(fmax(c, 0.0), (double)maxq);
                cl++;
            }
            double q = __dmul_rn(s, __dsub_rn(c, z));
            double e = __ddiv_rn(__dsub_rn(x[i], q), d);
            l = __dadd_rn(l, __dmul_rn(e, e));
            b = __dadd_rn(b, __ddiv_rn(__dmul_rn(__dmul_rn(0.25, s), s), __dmul_rn(d, d)));
            w[row + c1 + i] = q;
            codes[row + c1 + i] = (int)c;
            e_out[(long)r * lde + (c1 - i1) + i] = e;
#pragma unroll
            for (int j = 0; j < STRIP; j++) x[j] = __dsub_rn(x[j], __dmul_rn(e, us[i][j]));  // 0 for j ≤ i
        }
    }
    loss[r] = l;
    bound[r] = b;
    clipped[r] = cl;
}

// C[0:m, 0:nc] −= A[0:m, 0:k] · B[0:k, 0:nc], all row-major with leading dimensions (the lazy update
// W[:, j0:j1] −= E[:, a0:a0+k] · U[c1:c1+k, j0:j1], pointers already offset by the caller).
// 64 × 64 tile per block, 256 threads, 4 × 4 micro-tile per thread strided by 16, 16-deep k steps in shared memory.
// fp64 FMA (SIMT); the tensor-core DMMA path (mma.sync m8n8k4 f64) is the next step if this measures short.
#define GT 64
#define GK 16
extern "C" __global__ void __launch_bounds__(256)
dgemm_sub(int m, int nc, int k, const double *a, int lda, const double *bm, int ldb, double *c, int ldc) {
    __shared__ double as[GK][GT + 1];
    __shared__ double bs[GK][GT];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int r0 = blockIdx.y * GT, c0 = blockIdx.x * GT;
    double acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0;
    for (int k0 = 0; k0 < k; k0 += GK) {
#pragma unroll
        for (int e = 0; e < GT * GK / 256; e++) {
            int lin = tid + e * 256;
            int ar = lin / GK, ak = lin % GK;  // A: 16 consecutive k of one row per 16 threads
            as[ak][ar] = (r0 + ar < m && k0 + ak < k) ? a[(long)(r0 + ar) * lda + k0 + ak] : 0.0;
            int bk = lin / GT, bc = lin % GT;  // B: 64 consecutive columns of one k
            bs[bk][bc] = (k0 + bk < k && c0 + bc < nc) ? bm[(long)(k0 + bk) * ldb + c0 + bc] : 0.0;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GK; kk++) {
            double av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) { av[i] = as[kk][ty + 16 * i]; bv[i] = bs[kk][tx + 16 * i]; }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int r = r0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int cc = c0 + tx + 16 * j;
            if (r < m && cc < nc) c[(long)r * ldc + cc] -= acc[i][j];
        }
    }
}

// C[0:m, 0:n] += alpha · op(A) · op(B) on the tensor cores (dmma_f64.cuh), one 64 × 64 tile per block of DMMA_THREADS,
// grid (⌈n/64⌉, ⌈m/64⌉); ta/tb: A/B stored transposed; tri: 0 all tiles, 1 only tiles touching the lower triangle,
// 2 the upper (the Cholesky's trailing update needs the lower one only).
extern "C" __global__ void __launch_bounds__(DMMA_THREADS)
dgemm_tc(int ta, int tb, int tri, int m, int n, int k, double alpha, const double *a, long lda, const double *b,
         long ldb, double *c, long ldc) {
    const int row0 = blockIdx.y * DMMA_TILE, col0 = blockIdx.x * DMMA_TILE;
    if (dmma_f64_skip(tri, row0, col0)) return;
    __shared__ double smem[DMMA_SMEM_DOUBLES];
    if (!ta && !tb) dmma_f64_tile<false, false>(m, n, k, alpha, a, lda, b, ldb, c, ldc, row0, col0, smem);
    else if (!ta) dmma_f64_tile<false, true>(m, n, k, alpha, a, lda, b, ldb, c, ldc, row0, col0, smem);
    else if (!tb) dmma_f64_tile<true, false>(m, n, k, alpha, a, lda, b, ldb, c, ldc, row0, col0, smem);
    else dmma_f64_tile<true, true>(m, n, k, alpha, a, lda, b, ldb, c, ldc, row0, col0, smem);
}
