// Host stand-ins for gemv_tc.cu (compiled with -DBABAI_EMU by gemv_tc_run.sh): one std::thread per CUDA thread of a
// block, blocks one after another; cp.async is a plain 16-byte copy (commit/wait no-ops: a lane reads back only its
// own copies); mma.m16n8k16 exchanges the 32 lanes' fragments through a per-warp slot array and two warp barriers,
// then each lane forms its own C elements from the PTX fragment layout, summing k = 0..15 in order in float (the
// products of two fp16 values are exact in float, as in the Java twin TiledLayer.gemv).
#pragma once
#include <barrier>
#include <cmath>
#include <math.h>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static
#define __launch_bounds__(...)
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct __half { uint16_t x; };
template <class T> inline T __ldg(const T *p) { return *p; }
inline float __half2float(__half h) { _Float16 f; memcpy(&f, &h.x, 2); return (float)f; }
inline __half __float2half_rn(float v) { _Float16 f = (_Float16)v; __half h; memcpy(&h.x, &f, 2); return h; }
inline __half __uint2half_rn(unsigned v) { return __float2half_rn((float)v); }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
struct __half2 { __half x, y; };
inline __half2 __hsub2(__half2 a, __half2 b) {
    return {__float2half_rn(__half2float(a.x) - __half2float(b.x)), __float2half_rn(__half2float(a.y) - __half2float(b.y))};
}
using std::min; using std::max;

inline void cp_async16(void *smem, const void *gmem) { memcpy(smem, gmem, 16); }
inline void cp_async_commit() {}
template <int N> inline void cp_async_wait() {}

struct WarpSlots { unsigned a[32][4]; unsigned b[32][2]; };
inline std::vector<std::barrier<> *> g_warp_bar;
inline std::vector<WarpSlots> g_warp_slots;

inline float half_lo(unsigned v) { __half h{(uint16_t)(v & 0xFFFF)}; return __half2float(h); }
inline float half_hi(unsigned v) { __half h{(uint16_t)(v >> 16)}; return __half2float(h); }

inline void mma16816(float *d, const unsigned *a, unsigned b0, unsigned b1) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    WarpSlots &s = g_warp_slots[warp];
    for (int r = 0; r < 4; r++) s.a[lane][r] = a[r];
    s.b[lane][0] = b0; s.b[lane][1] = b1;
    g_warp_bar[warp]->arrive_and_wait();
    auto A = [&](int row, int k) {  // a0,a1: (g, 2t..); a2,a3: (g+8, 2t..); a4,a5: (g, 2t+8..); a6,a7: (g+8, 2t+8..)
        int l = 4 * (row % 8) + (k % 8) / 2, reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
        return k % 2 ? half_hi(s.a[l][reg]) : half_lo(s.a[l][reg]);
    };
    auto B = [&](int k, int n) {    // b0,b1: (k = 2t.., n = g); b2,b3: (k = 2t+8.., n = g)
        int l = 4 * n + (k % 8) / 2, reg = k >= 8 ? 1 : 0;
        return k % 2 ? half_hi(s.b[l][reg]) : half_lo(s.b[l][reg]);
    };
    const int g = lane / 4, t = lane % 4;
    for (int e = 0; e < 4; e++) {
        int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e % 2);
        float acc = d[e];
        for (int k = 0; k < 16; k++) acc = std::fma(A(row, k), B(k, col), acc);
        d[e] = acc;
    }
    g_warp_bar[warp]->arrive_and_wait();
}

// kernels without barriers or warp operations (prep, finish): every thread in turn on this thread
inline void launch_serial(dim3 grid, dim3 block, std::function<void()> body) {
    gridDim = grid; blockDim = block;
    for (unsigned by = 0; by < grid.y; by++)
        for (unsigned bx = 0; bx < grid.x; bx++) {
            blockIdx.x = bx; blockIdx.y = by;
            for (unsigned t = 0; t < block.x; t++) { threadIdx.x = t; body(); }
        }
}

inline void launch(dim3 grid, dim3 block, std::function<void()> body) {
    gridDim = grid; blockDim = block;
    int warps = (block.x + 31) / 32;
    g_warp_slots.assign(warps, WarpSlots{});
    for (unsigned by = 0; by < grid.y; by++)
        for (unsigned bx = 0; bx < grid.x; bx++) {
            blockIdx.x = bx; blockIdx.y = by;
            std::vector<std::barrier<> *> bars;
            for (int w = 0; w < warps; w++) bars.push_back(new std::barrier<>(32));
            g_warp_bar = bars;
            std::vector<std::thread> ts;
            for (unsigned t = 0; t < block.x; t++) ts.emplace_back([t, &body] { threadIdx.x = t; body(); });
            for (auto &t : ts) t.join();
            for (auto *b : bars) delete b;
        }
}
