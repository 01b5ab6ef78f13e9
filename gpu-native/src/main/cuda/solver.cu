// The GPTQ column sweep as Babai's nearest plane on the one-Cholesky factor Ũ (H_P + λI = Ũ·Ũᵀ, GPTQ's U = Ũ⁻¹),
// float64 throughout, as core's NearestPlaneSweep computes it:
//   for each column k (processing order):  x = w_k + a_k·(1/Ũ_kk)     a_k = Σ_{j<k} δ_j·Ũ_jk  (residuals fed forward)
//     c = clamp(rint(x/s) + z), q = s·(c − z), e = Ũ_kk·(x − q), loss += e², bound += ¼·s²·Ũ_kk², δ_k = w_k − q.
// The host twin of exactly these kernels is org.babaiquant.gpu.HostSweep; the loop that drives them (lazy blocks of bs
// columns, launches of SWEEP_COLS columns, lazy updates) is org.babaiquant.gpu.LatticeSweep. W (original weights),
// A (the accumulators a) and the codes are m × n row-major in processing order, Ũ row-major n × n (upper triangle),
// Δ (the current lazy block's residuals) m × bs.
//
// Why float64: the codes must equal the CPU solver's (ties aside). The step below rounds exactly as the Java loop does
// (explicit _rn intrinsics: no FMA contraction), so codes can only differ where the summation order of the a_k decides
// a rounding tie.
#include "dmma_f64.cuh"

#define SWEEP_COLS 128                 // columns per gptq_block launch (4 per lane)
#define SWEEP_SLOTS (SWEEP_COLS / 32)
#define SWEEP_ROWS 2                   // rows per warp, interleaved (two independent chains per lane)
#define SWEEP_WARPS 4                  // warps per block

// Columns [c1, c1 + width) (width ≤ SWEEP_COLS) of the lazy block starting at i1, for SWEEP_ROWS rows per warp. Lane l
// owns columns c1 + l, c1 + 32 + l, …: their accumulators, weights, grid, 1/Ũ_kk stay in registers for the whole launch.
// Column i: its owner lane takes the step of the header, the warp receives δ (and the row's loss/bound/clipped terms)
// by shuffles, and every lane adds δ·Ũ_ij to its later columns j > i (one fma, in column order: the order HostSweep
// follows). At the end each lane writes its columns' codes and residuals (coalesced across the warp); the row's loss,
// bound and clipped count (replicated in every lane, identical) are written by lane 0. Codes: one unsigned byte each
// when clipping (0 ≤ c ≤ maxq ≤ 255), else int32 (an unclipped code may leave [0, maxq]).
extern "C" __global__ void __launch_bounds__(SWEEP_WARPS * 32)
gptq_block(const double *w, double *a, void *codes, int ld, double *delta, int ldd, const double *ut, int n,
           const double *scale, const double *zero, int groups, const int *group_of, int m, int i1, int c1, int width,
           int clip, int maxq, double *loss, double *bound, int *clipped) {
    const unsigned FULL = 0xffffffffu;
    const int lane = threadIdx.x % 32;
    const int rbase = (blockIdx.x * SWEEP_WARPS + threadIdx.x / 32) * SWEEP_ROWS;
    if (rbase >= m) return;  // uniform across the warp
    double p[SWEEP_ROWS][SWEEP_SLOTS], wk[SWEEP_ROWS][SWEEP_SLOTS], sc[SWEEP_ROWS][SWEEP_SLOTS],
        zp[SWEEP_ROWS][SWEEP_SLOTS], dl[SWEEP_ROWS][SWEEP_SLOTS];
    int code[SWEEP_ROWS][SWEEP_SLOTS];
    double d[SWEEP_SLOTS], r1[SWEEP_SLOTS];
    double l[SWEEP_ROWS], b[SWEEP_ROWS];
    int cl[SWEEP_ROWS];
#pragma unroll
    for (int t = 0; t < SWEEP_SLOTS; t++) {
        const int j = t * 32 + lane, col = c1 + j;
        const bool in = j < width;
        d[t] = in ? ut[(long)col * n + col] : 1.0;
        r1[t] = __ddiv_rn(1.0, d[t]);
        const int g = in ? group_of[col] : 0;
#pragma unroll
        for (int q = 0; q < SWEEP_ROWS; q++) {
            const int r = rbase + q;
            const bool ok = in && r < m;
            p[q][t] = ok ? a[(long)r * ld + col] : 0.0;
            wk[q][t] = ok ? w[(long)r * ld + col] : 0.0;
            sc[q][t] = ok ? scale[(long)r * groups + g] : 1.0;
            zp[q][t] = ok ? zero[(long)r * groups + g] : 0.0;
            dl[q][t] = 0.0;
            code[q][t] = 0;
        }
    }
#pragma unroll
    for (int q = 0; q < SWEEP_ROWS; q++) {
        const int r = min(rbase + q, m - 1);
        l[q] = loss[r];
        b[q] = bound[r];
        cl[q] = clipped[r];
    }
#pragma unroll
    for (int sl = 0; sl < SWEEP_SLOTS; sl++) {
        for (int o = 0; o < 32; o++) {
            const int i = sl * 32 + o;
            if (i >= width) break;  // uniform
            const double *urow = ut + (long)(c1 + i) * n + c1;
            double u[SWEEP_SLOTS];
#pragma unroll
            for (int t = sl; t < SWEEP_SLOTS; t++) {
                const int j = t * 32 + lane;
                u[t] = (j > i && j < width) ? urow[j] : 0.0;
            }
#pragma unroll
            for (int q = 0; q < SWEEP_ROWS; q++) {
                double e2 = 0.0, bt = 0.0;
                int hit = 0;
                if (lane == o) {
                    const double s = sc[q][sl], z = zp[q][sl], dk = d[sl];
                    const double x = __dadd_rn(wk[q][sl], __dmul_rn(p[q][sl], r1[sl]));
                    double c = __dadd_rn(rint(__ddiv_rn(x, s)), z);
                    if (clip && (c < 0.0 || c > maxq)) {
                        c = fmin(fmax(c, 0.0), (double)maxq);
                        hit = 1;
                    }
                    const double qv = __dmul_rn(s, __dsub_rn(c, z));
                    const double e = __dmul_rn(dk, __dsub_rn(x, qv));
                    e2 = __dmul_rn(e, e);
                    bt = __dmul_rn(__dmul_rn(__dmul_rn(0.25, s), s), __dmul_rn(dk, dk));
                    dl[q][sl] = __dsub_rn(wk[q][sl], qv);
                    code[q][sl] = (int)c;
                }
                const double dv = __shfl_sync(FULL, dl[q][sl], o);
                l[q] = __dadd_rn(l[q], __shfl_sync(FULL, e2, o));
                b[q] = __dadd_rn(b[q], __shfl_sync(FULL, bt, o));
                cl[q] += __shfl_sync(FULL, hit, o);
#pragma unroll
                for (int t = sl; t < SWEEP_SLOTS; t++) {
                    const int j = t * 32 + lane;
                    if (j > i && j < width) p[q][t] = __fma_rn(dv, u[t], p[q][t]);
                }
            }
        }
    }
#pragma unroll
    for (int q = 0; q < SWEEP_ROWS; q++) {
        const int r = rbase + q;
        if (r >= m) continue;
#pragma unroll
        for (int t = 0; t < SWEEP_SLOTS; t++) {
            const int j = t * 32 + lane;
            if (j < width) {
                if (clip) static_cast<unsigned char *>(codes)[(long)r * ld + c1 + j] = (unsigned char)code[q][t];
                else static_cast<int *>(codes)[(long)r * ld + c1 + j] = code[q][t];
                delta[(long)r * ldd + (c1 - i1) + j] = dl[q][t];
            }
        }
        if (lane == 0) {
            loss[r] = l[q];
            bound[r] = b[q];
            clipped[r] = cl[q];
        }
    }
}

// C[0:m, 0:nc] += A[0:m, 0:k] · B[0:k, 0:nc], all row-major with leading dimensions (the lazy update
// A[:, j0:j1] += Δ[:, a0:a0+k] · Ũ[c1:c1+k, j0:j1], pointers already offset by the caller), each element's products
// summed by one fma per term in k order from 0, then added once: the order HostSweep.update follows (the exact path,
// for bit-for-bit parity with the host twin; the fast path is dgemm_tc on the tensor cores).
// 64 × 64 tile per block, 256 threads, 4 × 4 micro-tile per thread strided by 16, 16-deep k steps in shared memory.
#define GT 64
#define GK 16
extern "C" __global__ void __launch_bounds__(256)
dgemm_add(int m, int nc, int k, const double *a, int lda, const double *bm, int ldb, double *c, int ldc) {
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
            if (r < m && cc < nc) c[(long)r * ldc + cc] += acc[i][j];
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
