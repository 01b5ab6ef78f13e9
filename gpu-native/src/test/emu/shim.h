#pragma once
#include <math.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <barrier>
#include <vector>
#include <deque>
#include <functional>
#include <algorithm>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim, gridDim;
inline std::barrier<> *g_bar;
inline std::deque<std::barrier<>> *g_warp_bars;  // one per warp: warp-synchronous operations (shuffles, mma)
inline float g_dyn_smem[1 << 16];
#define __syncthreads() g_bar->arrive_and_wait()
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static
#define __launch_bounds__(...)
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
template <class T> inline T __ldg(const T *p) { return *p; }
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
struct alignas(16) float4 { float x, y, z, w; };
struct __half { uint16_t x; };
struct __nv_bfloat16 { uint16_t x; };
inline float half_bits_to_float(uint16_t h) {
    unsigned s = (h >> 15) & 1, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 1024), (int)e - 25);
    return s ? -v : v;
}
inline float __half2float(__half h) { return half_bits_to_float(h.x); }
inline float __bfloat162float(__nv_bfloat16 b) { return __uint_as_float((unsigned)b.x << 16); }
using std::min; using std::max;
// mma.sync.aligned.m8n8k4.row.col.f64 of one warp, with PTX's fragment layout (lane = 4·g + t): A(g, t) = a of lane
// 4g+t; B(t, g) = b of lane 4g+t; D(g, 2t + i) = c_i of lane 4g+t. The warp's fragments meet in a table between two
// warp barriers (every lane calls it, as on the GPU). Products summed in k order.
inline double g_mma_a[64][32], g_mma_b[64][32];
inline void emu_dmma_m8n8k4(double &c0, double &c1, double a, double b) {
    unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane >> 2, t = lane & 3;
    g_mma_a[warp][lane] = a; g_mma_b[warp][lane] = b;
    (*g_warp_bars)[warp].arrive_and_wait();
    double s0 = 0, s1 = 0;
    for (unsigned l = 0; l < 4; l++) {
        double al = g_mma_a[warp][4 * g + l];
        s0 += al * g_mma_b[warp][4 * (2 * t) + l];
        s1 += al * g_mma_b[warp][4 * (2 * t + 1) + l];
    }
    (*g_warp_bars)[warp].arrive_and_wait();
    c0 += s0; c1 += s1;
}
// __shfl_sync of a full warp (every lane calls it; the warp's values meet in a table between two warp barriers)
inline uint64_t g_shfl[64][32];
template <class T> inline T __shfl_sync(unsigned, T v, int src) {
    unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    uint64_t bits = 0; memcpy(&bits, &v, sizeof(T));
    g_shfl[warp][lane] = bits;
    (*g_warp_bars)[warp].arrive_and_wait();
    bits = g_shfl[warp][src];
    (*g_warp_bars)[warp].arrive_and_wait();
    T out; memcpy(&out, &bits, sizeof(T));
    return out;
}
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
// one block at a time, blockDim.x real threads with a barrier for __syncthreads
inline void launch(dim3 grid, dim3 block, std::function<void()> body) {
    gridDim = grid; blockDim = block;
    for (unsigned by = 0; by < grid.y; by++)
        for (unsigned bx = 0; bx < grid.x; bx++) {
            blockIdx.x = bx; blockIdx.y = by;
            std::barrier<> bar(block.x);
            g_bar = &bar;
            std::deque<std::barrier<>> warps;
            for (unsigned w = 0; w < (block.x + 31) / 32; w++) warps.emplace_back(std::min(32u, block.x - 32 * w));
            g_warp_bars = &warps;
            std::vector<std::thread> ts;
            for (unsigned t = 0; t < block.x; t++)
                ts.emplace_back([t, &body, &bar] { threadIdx.x = t; body(); });
            for (auto &t : ts) t.join();
        }
}
