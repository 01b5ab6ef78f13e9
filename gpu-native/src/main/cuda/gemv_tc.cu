// Tensor-core GEMV / small-batch GEMM on the repacked layout of org.babaiquant.serving.TiledLayer (its javadoc has
// the word map): y[b][o] = Σ_i x[b][i] · s[g(i)][o] · (q[i][o] − z[g(i)][o]) (+ SSQR's CSR outliers), for 2, 3, 4 and
// 8-bit codes, any g_idx (inputs permuted at load so that each group's inputs are consecutive whole 16-input tiles),
// batch a compile-time constant 1, 2, 4, 8 or 16.
// CPU twin (same arithmetic, same reduction order; the mma's internal order modelled as sequential):
// TiledLayer.gemv; parity test: TiledLayerTest; GPU check: org.babaiquant.gpu.ServingCheck.
//
// Arithmetic (exact where it can be): W is the mma's A operand as the exact fp16 integers q − z: codes are stored so
// that one AND/OR per register gives half2(1024 + q_lo, 1024 + q_hi) (the "magic number": 1024 = 0x6400 has ulp 1, so
// OR-ing a code < 1024 into its mantissa is exact), minus half2(1024 + z) is q − z exactly. x is scaled per row by a
// power of two (max |x| into [2^13, 2^14)) and split by gemv_tc_prep_x into fp16 hi = fp16(x) and lo = fp16(x − hi)
// (|x − hi − lo| ≤ 2⁻²²|x| + 2⁻²⁵ absolute), the B operand
// of two mma.m16n8k16 per tile with fp32 accumulation; the per-tile sum c is folded into y by y = fma(s, c, y) at every
// group change and at least every 8 tiles (128 inputs: bounds the fp32 error of c), so the scale multiplies once per
// segment, never a weight. Bound: |Δy| ≤ ~(2⁻²² + 130·2⁻²⁴ + splits·2⁻²⁴)·Σ|x·w| < 1e-5·Σ|x·w| (docs: gpu-native/README).
//
// Work split: one warp = one 16-output tile × one split-K range of 256-input chunks; 4 warps per block. Each lane
// streams its own 16-byte words of each chunk (BITS loads of 16 bytes, coalesced: a warp reads 512 contiguous bytes per
// load) into shared memory through a STAGES-deep cp.async ring (each lane reads back only what it copied: no barrier),
// decodes and issues 2·16·NT mma per chunk. Split s writes partial[s][b][o]; gemv_tc_finish adds the splits in split
// order (deterministic for a given split count) and the outliers.
#ifdef BABAI_EMU
#include "emu_tc.h"  // host stand-ins (src/test/emu): cp.async as a copy, mma.m16n8k16 through a warp exchange
#else
#include <cuda_fp16.h>
#include <stdint.h>

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// D = A·B + D, m16n8k16, A row-major fp16 (4 regs), B col-major fp16 (2 regs), fp32 accumulators.
__device__ __forceinline__ void mma16816(float *d, const unsigned *a, unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

#define TC_WARPS 4
#define TC_THREADS (TC_WARPS * 32)
#define CHUNK_K 256
#define SEGMENT_TILES 8

// Register `reg` of pair p (= 4·tile + reg) from the lane's words: half2(1024 + q_lo, 1024 + q_hi) as raw bits.
template <int BITS>
__device__ __forceinline__ unsigned magic_pair(const unsigned *w, int p) {
    if (BITS == 3) {
        unsigned lo = (w[p / 8] >> (2 * (p % 8))) & 0x00030003u;
        unsigned hi = (w[8 + p / 16] >> (p % 16)) & 0x00010001u;
        return lo | (hi << 2) | 0x64006400u;
    } else {
        constexpr int PER = 16 / BITS;
        constexpr unsigned MASK = ((1u << BITS) - 1u) * 0x00010001u;
        return ((w[p / PER] >> (BITS * (p % PER))) & MASK) | 0x64006400u;
    }
}

__device__ __forceinline__ unsigned hsub2_bits(unsigned a, unsigned b) {
    __half2 r = __hsub2(*reinterpret_cast<__half2 *>(&a), *reinterpret_cast<__half2 *>(&b));
    return *reinterpret_cast<unsigned *>(&r);
}

template <int BITS, int BATCH>
__device__ __forceinline__ void gemv_tc(const unsigned *__restrict__ words, const int *__restrict__ tile_group,
                                        const __half *__restrict__ scales, const unsigned char *__restrict__ zeros,
                                        const unsigned *__restrict__ xh, const unsigned *__restrict__ xl,
                                        float *__restrict__ partial, int out, int out_pad, int k_pad, int splits) {
    constexpr int NT = (BATCH + 7) / 8;           // n8 column tiles
    constexpr int LW = 4 * BITS;                  // 32-bit words per lane per chunk
    constexpr int STAGES = BITS == 8 ? 3 : 4;     // ≤ 48 KB of shared memory per block
    __shared__ uint4 ring[TC_WARPS][STAGES][BITS][32];

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, tq = lane % 4;
    const int ot = blockIdx.x * TC_WARPS + warp;
    if (ot * 16 >= out_pad) return;               // no barrier below: a finished warp may leave
    const int chunks = k_pad / CHUNK_K;
    const int s = blockIdx.y;
    const int c0 = (int)((long)s * chunks / splits), c1 = (int)((long)(s + 1) * chunks / splits);
    const unsigned *src = words + (long)ot * chunks * LW * 32;

    // prologue: STAGES − 1 chunks in flight (empty groups keep the count uniform)
#pragma unroll
    for (int st = 0; st < STAGES - 1; st++) {
        if (c0 + st < c1) {
#pragma unroll
            for (int l = 0; l < BITS; l++)
                cp_async16(&ring[warp][st][l][lane], src + ((long)(c0 + st) * BITS + l) * 128 + lane * 4);
        }
        cp_async_commit();
    }

    float y[NT][4], c[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int r = 0; r < 4; r++) { y[n][r] = 0.0f; c[n][r] = 0.0f; }
    int cur = -1;
    unsigned z_lo = 0, z_hi = 0;                  // half2(1024 + z) of rows g and g + 8
    float s_lo = 0.0f, s_hi = 0.0f;               // scales of rows g and g + 8
    const int row_lo = ot * 16 + g, row_hi = row_lo + 8;

    for (int ch = c0; ch < c1; ch++) {
        const int next = ch + STAGES - 1;
        if (next < c1) {
#pragma unroll
            for (int l = 0; l < BITS; l++)
                cp_async16(&ring[warp][(next - c0) % STAGES][l][lane], src + ((long)next * BITS + l) * 128 + lane * 4);
        }
        cp_async_commit();
        cp_async_wait<STAGES - 1>();
        unsigned w[LW];
        const int st = (ch - c0) % STAGES;
#pragma unroll
        for (int l = 0; l < BITS; l++) {
            uint4 v = ring[warp][st][l][lane];
            w[4 * l] = v.x; w[4 * l + 1] = v.y; w[4 * l + 2] = v.z; w[4 * l + 3] = v.w;
        }
#pragma unroll
        for (int t = 0; t < 16; t++) {
            const int tile = ch * 16 + t;
            const int gr = __ldg(tile_group + tile);
            if (gr != cur) {                      // warp-uniform
                cur = gr;
                unsigned zl = 1024u + zeros[(long)gr * out_pad + row_lo], zh = 1024u + zeros[(long)gr * out_pad + row_hi];
                __half hl = __uint2half_rn(zl), hh = __uint2half_rn(zh);
                unsigned bl = __half_as_ushort(hl), bh = __half_as_ushort(hh);
                z_lo = bl | (bl << 16);
                z_hi = bh | (bh << 16);
                s_lo = __half2float(scales[(long)gr * out_pad + row_lo]);
                s_hi = __half2float(scales[(long)gr * out_pad + row_hi]);
            }
            unsigned a[4];
#pragma unroll
            for (int r = 0; r < 4; r++) a[r] = hsub2_bits(magic_pair<BITS>(w, 4 * t + r), (r & 1) ? z_hi : z_lo);
            const long k = (long)tile * 16 + 2 * tq;  // in halves; xh/xl are [BATCH][k_pad] halves, read as pairs
#pragma unroll
            for (int n = 0; n < NT; n++) {
                const int col = n * 8 + g;
                unsigned h0 = 0, h1 = 0, l0 = 0, l1 = 0;
                if (col < BATCH) {
                    const long base = ((long)col * k_pad + k) / 2;
                    h0 = __ldg(xh + base); h1 = __ldg(xh + base + 4);
                    l0 = __ldg(xl + base); l1 = __ldg(xl + base + 4);
                }
                mma16816(c[n], a, h0, h1);
                mma16816(c[n], a, l0, l1);
            }
            const bool last = tile + 1 == c1 * 16;
            if (last || (tile + 1) % SEGMENT_TILES == 0 || __ldg(tile_group + tile + 1) != gr) {
#pragma unroll
                for (int n = 0; n < NT; n++) {
                    y[n][0] = fmaf(s_lo, c[n][0], y[n][0]);
                    y[n][1] = fmaf(s_lo, c[n][1], y[n][1]);
                    y[n][2] = fmaf(s_hi, c[n][2], y[n][2]);
                    y[n][3] = fmaf(s_hi, c[n][3], y[n][3]);
#pragma unroll
                    for (int r = 0; r < 4; r++) c[n][r] = 0.0f;
                }
            }
        }
    }
    cp_async_wait<0>();
    // C fragment: c0, c1 = (row g, cols 2tq, 2tq + 1); c2, c3 = (row g + 8, same cols)
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int b = n * 8 + 2 * tq + (r & 1);
            const int o = (r < 2) ? row_lo : row_hi;
            if (b < BATCH && o < out) partial[((long)s * BATCH + b) * out + o] = y[n][r];
        }
}

#define GEMV_TC_ENTRY(BITS, BATCH)                                                                                     \
    extern "C" __global__ void __launch_bounds__(TC_THREADS)                                                           \
        gemv_tc_b##BITS##_n##BATCH(const unsigned *words, const int *tile_group, const __half *scales,                \
                                   const unsigned char *zeros, const unsigned *xh, const unsigned *xl, float *partial, \
                                   int out, int out_pad, int k_pad, int splits) {                                      \
        gemv_tc<BITS, BATCH>(words, tile_group, scales, zeros, xh, xl, partial, out, out_pad, k_pad, splits);        \
    }
#define GEMV_TC_BATCHES(BITS) \
    GEMV_TC_ENTRY(BITS, 1) GEMV_TC_ENTRY(BITS, 2) GEMV_TC_ENTRY(BITS, 4) GEMV_TC_ENTRY(BITS, 8) GEMV_TC_ENTRY(BITS, 16)
GEMV_TC_BATCHES(2)
GEMV_TC_BATCHES(3)
GEMV_TC_BATCHES(4)
GEMV_TC_BATCHES(8)

// x [batch][in] fp32 → xh, xl [batch][k_pad] fp16 in the permuted input order (0 where perm < 0), row b first scaled
// by 2^exps[b] (exact; the host picks it so that max |x_b| lands in [2^13, 2^14): fp16's range and precision whatever
// the activations' magnitude): hi = fp16_rn(v), lo = fp16_rn(v − hi). Grid (ceil(k_pad/256), batch), block 256.
extern "C" __global__ void __launch_bounds__(256)
gemv_tc_prep_x(const float *x, const int *perm, const int *exps, int in, int k_pad, __half *xh, __half *xl) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const int b = blockIdx.y;
    if (k >= k_pad) return;
    const int i = perm[k];
    const float v = i < 0 ? 0.0f : ldexpf(x[(long)b * in + i], exps[b]);
    const __half hi = __float2half_rn(v);
    xh[(long)b * k_pad + k] = hi;
    xl[(long)b * k_pad + k] = __float2half_rn(v - __half2float(hi));
}

// y[b][o] = 2^−exps[b] · Σ_s partial[s][b][o] (splits in order), then SSQR's outliers of output o (row_ptr != 0):
// y = fma(x[b][col]·s[g(col)][o], offset, y) on the unscaled x. Grid ceil(out/256), block 256.
extern "C" __global__ void __launch_bounds__(256)
gemv_tc_finish(const float *partial, int splits, int batch, int out, float *y, const int *row_ptr, const int *col,
               const int *offset, const __half *scales, int out_pad, int group_size, const float *x, int in,
               const int *exps) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out) return;
    for (int b = 0; b < batch; b++) {
        float s = 0.0f;
        for (int t = 0; t < splits; t++) s += partial[((long)t * batch + b) * out + o];
        s = ldexpf(s, -exps[b]);
        if (row_ptr != 0) {
            for (int k = row_ptr[o]; k < row_ptr[o + 1]; k++) {
                const int j = col[k];
                s = fmaf(x[(long)b * in + j] * __half2float(scales[(long)(j / group_size) * out_pad + o]), (float)offset[k], s);
            }
        }
        y[(long)b * out + o] = s;
    }
}
