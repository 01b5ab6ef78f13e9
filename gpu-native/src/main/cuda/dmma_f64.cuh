// One fp64 tensor-core GEMM tile (DMMA: mma.sync.aligned.m8n8k4 f64, sm_80+), shared by the solver's lazy updates,
// the device Cholesky's trailing updates and the Hessian's XᵀX. Header only: a module includes it and wraps
// dmma_f64_tile in its own extern "C" __global__ kernel.
//
//   C[row0 : row0+64, col0 : col0+64] += alpha · op(A) · op(B)     restricted to rows < m, columns < n
//
// op(A) is m × k: A row-major m × k (A[i·lda + l]) or, with TRANS_A, A row-major k × m (A[l·lda + i]).
// op(B) is k × n: B row-major k × n (B[l·ldb + j]) or, with TRANS_B, B row-major n × k (B[j·ldb + l]).
// Called by all DMMA_THREADS (128) threads of a block, uniformly (it synchronises the block). Four warps, 2 × 2, each
// own a 32 × 32 quarter of the 64 × 64 tile as 4 × 4 m8n8 accumulators (32 doubles per lane). k runs in slabs of
// DMMA_BK = 8 staged in shared memory through a DMMA_STAGES = 4 deep cp.async ring (8-byte copies: any leading
// dimension and offset is legal; out-of-range elements are zero-filled by the copy itself).
//
// Summation order: per output element, the products of each k-step of 4 are summed inside the DMMA unit (order not
// documented by NVIDIA), the k-steps accumulate in order l = 0, 4, 8, …, and the tile's sum is added to C once
// (C + alpha·acc). The solver's codes do not depend on this order except where a rounding tie is decided the other way
// (on the H200 on 2026-12-04, 0 of 235 M codes changed between summation orders); the exact host twin of the solver
// therefore runs against the in-order SIMT update (solver.cu dgemm_add), and DMMA results are compared to the CPU
// solver under the parity criteria.
//
// Shared memory: the caller's `__shared__ double smem[DMMA_SMEM_DOUBLES]` (2 · 4 · 8 · 72 doubles = 36.9 KB; passed in
// so that the kernel declares it once whatever the number of template instances it calls). Rows of the staged tiles are 72 doubles
// (64 + 8) so that a fragment load (lanes t = 0..3 on four k rows, g = 0..7 on eight columns) touches every bank
// pair once per half warp.
//
// Triangles: dmma_f64_skip(tri, row0, col0) says whether a 64 × 64 tile lies wholly on the side not wanted
// (tri = 1: keep tiles touching the lower triangle j ≤ i; tri = 2: the upper, j ≥ i; 0: all). Tiles crossing the
// diagonal are computed whole (both sides correct).
//
// Host emulation (src/test/emu): with BABAI_EMU defined the shim provides emu_dmma_m8n8k4 (the warp's fragments
// exchanged through a block barrier, exact PTX fragment layout) and plain copies for cp.async.
#pragma once

#define DMMA_THREADS 128
#define DMMA_TILE 64
#define DMMA_BK 8
#define DMMA_STAGES 4
#define DMMA_LD (DMMA_TILE + 8)
#define DMMA_SMEM_DOUBLES (2 * DMMA_STAGES * DMMA_BK * DMMA_LD)

#ifndef BABAI_EMU
__device__ __forceinline__ void dmma_m8n8k4(double &c0, double &c1, double a, double b) {
    asm volatile("mma.sync.aligned.m8n8k4.row.col.f64.f64.f64.f64 {%0, %1}, {%2}, {%3}, {%0, %1};\n"
                 : "+d"(c0), "+d"(c1)
                 : "d"(a), "d"(b));
}
// 8-byte asynchronous copy global → shared; valid == false zero-fills the destination without reading src
__device__ __forceinline__ void dmma_cp_async8(double *dst, const double *src, bool valid) {
    unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    int bytes = valid ? 8 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void dmma_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void dmma_cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
#else
#define dmma_m8n8k4 emu_dmma_m8n8k4
inline void dmma_cp_async8(double *dst, const double *src, bool valid) { *dst = valid ? *src : 0.0; }
inline void dmma_cp_commit() {}
template <int N> inline void dmma_cp_wait() {}
#endif

__device__ __forceinline__ bool dmma_f64_skip(int tri, int row0, int col0) {
    if (tri == 1) return col0 > row0 + DMMA_TILE - 1;  // every column right of every row
    if (tri == 2) return row0 > col0 + DMMA_TILE - 1;
    return false;
}

template <bool TRANS_A, bool TRANS_B>
__device__ __forceinline__ void dmma_f64_stage(double (*as)[DMMA_LD], double (*bs)[DMMA_LD], int m, int n, int k,
                                               const double *a, long lda, const double *b, long ldb, int row0,
                                               int col0, int k0) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int e = 0; e < DMMA_TILE * DMMA_BK / DMMA_THREADS; e++) {
        int idx = tid + e * DMMA_THREADS;
        // consecutive threads on consecutive global addresses
        int i = TRANS_A ? idx % DMMA_TILE : idx / DMMA_BK;
        int l = TRANS_A ? idx / DMMA_TILE : idx % DMMA_BK;
        bool ok = row0 + i < m && k0 + l < k;
        const double *src = ok ? (TRANS_A ? a + (long)(k0 + l) * lda + row0 + i : a + (long)(row0 + i) * lda + k0 + l)
                               : a;
        dmma_cp_async8(&as[l][i], src, ok);
        int j = TRANS_B ? idx / DMMA_BK : idx % DMMA_TILE;
        int lb = TRANS_B ? idx % DMMA_BK : idx / DMMA_TILE;
        bool okb = col0 + j < n && k0 + lb < k;
        const double *srcb = okb ? (TRANS_B ? b + (long)(col0 + j) * ldb + k0 + lb : b + (long)(k0 + lb) * ldb + col0 + j)
                                 : b;
        dmma_cp_async8(&bs[lb][j], srcb, okb);
    }
}

template <bool TRANS_A, bool TRANS_B>
__device__ void dmma_f64_tile(int m, int n, int k, double alpha, const double *a, long lda, const double *b, long ldb,
                              double *c, long ldc, int row0, int col0, double *smem) {
    double(*as)[DMMA_BK][DMMA_LD] = reinterpret_cast<double(*)[DMMA_BK][DMMA_LD]>(smem);
    double(*bs)[DMMA_BK][DMMA_LD] = reinterpret_cast<double(*)[DMMA_BK][DMMA_LD]>(smem + DMMA_STAGES * DMMA_BK * DMMA_LD);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane >> 2, t = lane & 3;
    const int wr = (warp >> 1) * 32, wc = (warp & 1) * 32;
    double acc[4][4][2];
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++) acc[mi][ni][0] = acc[mi][ni][1] = 0.0;

    const int slabs = (k + DMMA_BK - 1) / DMMA_BK;
#pragma unroll
    for (int s = 0; s < DMMA_STAGES - 1; s++) {
        if (s < slabs) dmma_f64_stage<TRANS_A, TRANS_B>(as[s], bs[s], m, n, k, a, lda, b, ldb, row0, col0, s * DMMA_BK);
        dmma_cp_commit();
    }
    for (int kt = 0; kt < slabs; kt++) {
        dmma_cp_wait<DMMA_STAGES - 2>();  // slab kt has landed (this thread's copies) …
        __syncthreads();                  // … everyone's; and every warp is done with the stage refilled below
        int next = kt + DMMA_STAGES - 1;
        if (next < slabs) {
            int st = next % DMMA_STAGES;
            dmma_f64_stage<TRANS_A, TRANS_B>(as[st], bs[st], m, n, k, a, lda, b, ldb, row0, col0, next * DMMA_BK);
        }
        dmma_cp_commit();
        const int st = kt % DMMA_STAGES;
#pragma unroll
        for (int kk = 0; kk < DMMA_BK; kk += 4) {
            double fa[4], fb[4];
#pragma unroll
            for (int mi = 0; mi < 4; mi++) fa[mi] = as[st][kk + t][wr + mi * 8 + g];  // A fragment: row g, k t
#pragma unroll
            for (int ni = 0; ni < 4; ni++) fb[ni] = bs[st][kk + t][wc + ni * 8 + g];  // B fragment: k t, column g
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int ni = 0; ni < 4; ni++) dmma_m8n8k4(acc[mi][ni][0], acc[mi][ni][1], fa[mi], fb[ni]);
        }
    }
    dmma_cp_wait<0>();
    __syncthreads();  // the caller may reuse shared memory (another tile) right away
#pragma unroll
    for (int mi = 0; mi < 4; mi++) {
        int r = row0 + wr + mi * 8 + g;  // accumulator: row g, columns 2t and 2t + 1
        if (r >= m) continue;
#pragma unroll
        for (int ni = 0; ni < 4; ni++) {
            int cc = col0 + wc + ni * 8 + 2 * t;
            if (cc < n) c[(long)r * ldc + cc] += alpha * acc[mi][ni][0];
            if (cc + 1 < n) c[(long)r * ldc + cc + 1] += alpha * acc[mi][ni][1];
        }
    }
}
