// Dequantize + matrix-vector product, batch 1..8: y[b][o] = Σ_i x[b][i] · s[g(i)][o] · (q[i][o] − z[g(i)][o]),
// g(i) = i / group_size, plus, for SSQR, the CSR outliers Σ_k x[b][col_k] · s[g(col_k)][o] · offset_k.
// Java reference: org.babaiquant.core.CpuBackend (float64 on the same packed words).
//
// Layout on the device (both formats): codes packed as the GPTQ checkpoint's qweight, uint32 [in·BITS/32][out]
// (LSB first along the input axis: one word holds 32/BITS consecutive inputs of one output), fp16 scales
// [groups][out] (the checkpoint's scales), zero points as uint8 [groups][out] (unpacked from qzeros on upload: 1 byte
// instead of BITS bits per group and output, < 1% more bytes at g128). SSQR's row-major codes are repacked into the
// same layout on upload, so both formats share one dense kernel.
//
// Precision: float32 FMA; codes and fp16 scales are exact in float32. Per group the kernel forms
// s·(Σ x·q − z·Σ x), so the zero point costs one FMA per group instead of one per weight.
//
// Work split: thread = one output column (consecutive threads read consecutive words of a qweight row: coalesced),
// block = 256 outputs × one slice of `split_len` inputs, staged with its per-group sums of x in shared memory; the
// slices' partial sums go to partial[slice][b][o] and a second kernel adds them in a fixed order (deterministic) and
// adds the outliers.
#include <cuda_fp16.h>

#define MAX_BATCH 8
#define THREADS 256

template <int BITS>
__device__ void dense_slice(const unsigned *__restrict__ qweight, const __half *__restrict__ scales,
                            const unsigned char *__restrict__ zeros, const float *__restrict__ x,
                            float *__restrict__ partial, int in, int out, int group_size, int batch, int split_len) {
    constexpr int PER = 32 / BITS;
    constexpr unsigned MASK = (1u << BITS) - 1u;
    extern __shared__ float smem[];
    float *xs = smem;                            // [batch][split_len]
    float *gsum = smem + MAX_BATCH * split_len;  // [batch][groups in slice]
    const int i0 = blockIdx.y * split_len;
    const int len = min(split_len, in - i0);
    const int g0 = i0 / group_size;
    const int ng = (i0 + len - 1) / group_size - g0 + 1;
    for (int idx = threadIdx.x; idx < batch * len; idx += blockDim.x) {
        int b = idx / len, i = idx % len;
        xs[b * split_len + i] = x[(long)b * in + i0 + i];
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < batch * ng; idx += blockDim.x) {
        int b = idx / ng, gl = idx % ng;
        int lo = max(i0, (g0 + gl) * group_size), hi = min(i0 + len, (g0 + gl + 1) * group_size);
        float s = 0.0f;
        for (int i = lo; i < hi; i++) s += xs[b * split_len + i - i0];
        gsum[b * ng + gl] = s;
    }
    __syncthreads();
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out) return;

    float y[MAX_BATCH], acc[MAX_BATCH];
#pragma unroll
    for (int b = 0; b < MAX_BATCH; b++) { y[b] = 0.0f; acc[b] = 0.0f; }
    int g = g0;
    const int w0 = i0 / PER, w1 = (i0 + len) / PER;  // split_len and in are multiples of PER (checked on the host)
#pragma unroll 4
    for (int wi = w0; wi < w1; wi++) {
        int gi = wi * PER / group_size;  // group_size is a multiple of PER: a word never straddles two groups
        if (gi != g) {
            float s = __half2float(scales[(long)g * out + o]), z = (float)zeros[(long)g * out + o];
#pragma unroll
            for (int b = 0; b < MAX_BATCH; b++)
                if (b < batch) { y[b] = fmaf(s, acc[b] - z * gsum[b * ng + g - g0], y[b]); acc[b] = 0.0f; }
            g = gi;
        }
        unsigned q = __ldg(qweight + (long)wi * out + o);
        const int xi = wi * PER - i0;  // a multiple of PER ≥ 4 and split_len is one of 4: float4-aligned
        float code[PER];
#pragma unroll
        for (int e = 0; e < PER; e++)  // code → float without the slow I2F: the bits of 2^23 + code, minus 2^23
            code[e] = __uint_as_float(((q >> (e * BITS)) & MASK) | 0x4B000000u) - 8388608.0f;
#pragma unroll
        for (int b = 0; b < MAX_BATCH; b++) {
            if (b < batch) {
                const float4 *xv = reinterpret_cast<const float4 *>(xs + b * split_len + xi);
#pragma unroll
                for (int v = 0; v < PER / 4; v++) {
                    float4 x4 = xv[v];  // same address in every thread: a broadcast
                    acc[b] = fmaf(x4.x, code[4 * v], acc[b]);
                    acc[b] = fmaf(x4.y, code[4 * v + 1], acc[b]);
                    acc[b] = fmaf(x4.z, code[4 * v + 2], acc[b]);
                    acc[b] = fmaf(x4.w, code[4 * v + 3], acc[b]);
                }
            }
        }
    }
    float s = __half2float(scales[(long)g * out + o]), z = (float)zeros[(long)g * out + o];
#pragma unroll
    for (int b = 0; b < MAX_BATCH; b++)
        if (b < batch) {
            y[b] = fmaf(s, acc[b] - z * gsum[b * ng + g - g0], y[b]);
            partial[((long)blockIdx.y * batch + b) * out + o] = y[b];
        }
}

// Grid (ceil(out/256), ceil(in/split_len)), block 256, dynamic shared memory
// 4·(8·split_len + batch·(split_len/group_size + 2)) bytes.
extern "C" __global__ void __launch_bounds__(THREADS)
gemv_dense_b2(const unsigned *qw, const __half *sc, const unsigned char *zp, const float *x, float *partial, int in,
              int out, int group_size, int batch, int split_len) {
    dense_slice<2>(qw, sc, zp, x, partial, in, out, group_size, batch, split_len);
}
extern "C" __global__ void __launch_bounds__(THREADS)
gemv_dense_b4(const unsigned *qw, const __half *sc, const unsigned char *zp, const float *x, float *partial, int in,
              int out, int group_size, int batch, int split_len) {
    dense_slice<4>(qw, sc, zp, x, partial, in, out, group_size, batch, split_len);
}
extern "C" __global__ void __launch_bounds__(THREADS)
gemv_dense_b8(const unsigned *qw, const __half *sc, const unsigned char *zp, const float *x, float *partial, int in,
              int out, int group_size, int batch, int split_len) {
    dense_slice<8>(qw, sc, zp, x, partial, in, out, group_size, batch, split_len);
}

// y[b][o] = Σ_slice partial[slice][b][o] (in slice order), plus the outliers of output o when row_ptr != 0:
// CSR over outputs, offset_k = c − zero (an integer), value s[g(col_k)][o] · offset_k.
// Grid ceil(out/256), block 256.
extern "C" __global__ void __launch_bounds__(THREADS)
gemv_finish(const float *partial, int slices, int batch, int out, float *y, const int *row_ptr, const int *col,
            const int *offset, const __half *scales, int group_size, const float *x, int in) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out) return;
    for (int b = 0; b < batch; b++) {
        float s = 0.0f;
        for (int t = 0; t < slices; t++) s += partial[((long)t * batch + b) * out + o];
        if (row_ptr != 0) {
            for (int k = row_ptr[o]; k < row_ptr[o + 1]; k++) {
                int j = col[k];
                s = fmaf(x[(long)b * in + j] * __half2float(scales[(long)(j / group_size) * out + o]),
                         (float)offset[k], s);
            }
        }
        y[(long)b * out + o] = s;
    }
}
