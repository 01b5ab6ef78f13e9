// Desk-check of gemv_tc.cu's index math and arithmetic on the host (emu_tc.h): layers repacked by a C++ port of
// org.babaiquant.serving.TiledLayer's word map (its javadoc), products through gemv_tc_prep_x, gemv_tc_b<bits>_n<batch>
// and gemv_tc_finish, checked against float64 sums: max |Δy| / Σ|x·w| ≤ 1e-5 for 2, 3, 4, 8 bits, batch 1, 2, 4, 8, 16,
// natural / act-order / uneven groups, odd sizes, splits 1 and one per chunk, SSQR outliers. Run by gemv_tc_run.sh.
#include "emu_tc.h"
#include "k_gemv_tc.h"
#include <cstdio>
#include <random>
#include <algorithm>

struct Layer {
    int bits, in, out, group, groups, out_pad, k_pad;
    std::vector<int> codes;  // [out][in]
    std::vector<int> gidx;   // [in]
    std::vector<int> zero;   // [groups][out]
    std::vector<__half> scale;  // [groups][out]
    std::vector<int> row_ptr, col, offset;  // SSQR outliers (empty: none)
    // tiled
    std::vector<unsigned> words;
    std::vector<int> perm, tile_group;
    std::vector<__half> sc_pad;
    std::vector<unsigned char> z_pad;
};

static int round_up(int v, int m) { return (v + m - 1) / m * m; }

static void repack(Layer &L) {
    std::vector<int> count(L.groups, 0), start(L.groups);
    for (int g : L.gidx) count[g]++;
    int k = 0;
    for (int g = 0; g < L.groups; g++) { start[g] = k; k += round_up(count[g], 16); }
    L.k_pad = std::max(256, round_up(k, 256));
    L.perm.assign(L.k_pad, -1);
    L.tile_group.assign(L.k_pad / 16, L.groups - 1);
    std::vector<int> fill = start;
    for (int i = 0; i < L.in; i++) L.perm[fill[L.gidx[i]]++] = i;
    for (int g = 0; g < L.groups; g++)
        for (int t = start[g] / 16; t < (start[g] + round_up(count[g], 16)) / 16; t++) L.tile_group[t] = g;
    L.out_pad = round_up(L.out, 16);
    L.sc_pad.assign((size_t)L.groups * L.out_pad, __half{0});
    L.z_pad.assign((size_t)L.groups * L.out_pad, 0);
    for (int g = 0; g < L.groups; g++)
        for (int o = 0; o < L.out; o++) {
            L.sc_pad[(size_t)g * L.out_pad + o] = L.scale[(size_t)g * L.out + o];
            L.z_pad[(size_t)g * L.out_pad + o] = (unsigned char)L.zero[(size_t)g * L.out + o];
        }
    int chunks = L.k_pad / 256, lw = 4 * L.bits;
    L.words.assign((size_t)(L.out_pad / 16) * chunks * lw * 32, 0u);
    for (int ot = 0; ot < L.out_pad / 16; ot++)
        for (int c = 0; c < chunks; c++) {
            size_t base = ((size_t)ot * chunks + c) * lw * 32;
            for (int lane = 0; lane < 32; lane++)
                for (int p = 0; p < 64; p++)
                    for (int h = 0; h < 2; h++) {
                        int reg = p % 4;
                        int o = ot * 16 + lane / 4 + 8 * (reg % 2);
                        int kp = c * 256 + (p / 4) * 16 + 2 * (lane % 4) + h + 8 * (reg / 2);
                        int i = L.perm[kp];
                        int q = (o < L.out && i >= 0) ? L.codes[(size_t)o * L.in + i] : 0;
                        int planes[2][2] = {{L.bits == 3 ? 2 : L.bits, 0}, {1, 8}};
                        for (int pl = 0; pl < (L.bits == 3 ? 2 : 1); pl++) {
                            int b = planes[pl][0], per = 16 / b, w = planes[pl][1] + p / per;
                            int part = (L.bits == 3 && b == 1) ? q >> 2 : q & ((1 << b) - 1);
                            L.words[base + (w / 4) * 128 + lane * 4 + w % 4] |= (unsigned)part << (16 * h + (p % per) * b);
                        }
                    }
        }
}

static int failures = 0, cases = 0;

template <int BITS, int NB>
static void check(Layer &L, std::mt19937_64 &rng, int batch, int splits, const char *what) {
    std::normal_distribution<double> nd;
    std::vector<float> x((size_t)NB * L.in, 0.0f);
    for (int b = 0; b < batch; b++) {
        double mag = std::pow(10.0, (int)(rng() % 13) - 6);  // rows from 1e-6 to 1e6: beyond fp16's range both ways
        for (int i = 0; i < L.in; i++) x[(size_t)b * L.in + i] = (float)(mag * nd(rng) * std::exp(2 * nd(rng)));
    }
    std::vector<int> exps(NB, 0);
    for (int b = 0; b < NB; b++) {  // as TiledLayer.exponents: max |x_b| into [2^13, 2^14)
        float m = 0;
        for (int i = 0; i < L.in; i++) m = std::max(m, std::fabs(x[(size_t)b * L.in + i]));
        if (m > 0) exps[b] = 13 - std::ilogb(m);
    }
    std::vector<__half> xh((size_t)NB * L.k_pad), xl((size_t)NB * L.k_pad);
    launch_serial({(unsigned)((L.k_pad + 255) / 256), (unsigned)NB}, {256}, [&] {
        gemv_tc_prep_x(x.data(), L.perm.data(), exps.data(), L.in, L.k_pad, xh.data(), xl.data());
    });
    std::vector<float> partial((size_t)splits * NB * L.out, NAN), y((size_t)NB * L.out, NAN);
    launch({(unsigned)((L.out_pad / 16 + 3) / 4), (unsigned)splits}, {128}, [&] {
        gemv_tc<BITS, NB>(L.words.data(), L.tile_group.data(), L.sc_pad.data(), L.z_pad.data(),
                          (const unsigned *)xh.data(), (const unsigned *)xl.data(), partial.data(), L.out, L.out_pad, L.k_pad, splits);
    });
    bool ssqr = !L.row_ptr.empty();
    launch_serial({(unsigned)((L.out + 255) / 256)}, {256}, [&] {
        gemv_tc_finish(partial.data(), splits, NB, L.out, y.data(), ssqr ? L.row_ptr.data() : nullptr, ssqr ? L.col.data() : nullptr,
                       ssqr ? L.offset.data() : nullptr, L.sc_pad.data(), L.out_pad, L.group, x.data(), L.in, exps.data());
    });
    double worst = 0;
    for (int b = 0; b < batch; b++)
        for (int o = 0; o < L.out; o++) {
            double sum = 0, abs = 0;
            for (int i = 0; i < L.in; i++) {
                int g = L.gidx[i];
                double w = (double)__half2float(L.scale[(size_t)g * L.out + o]) * (L.codes[(size_t)o * L.in + i] - L.zero[(size_t)g * L.out + o]);
                double v = x[(size_t)b * L.in + i] * w;
                sum += v; abs += std::fabs(v);
            }
            if (ssqr)
                for (int k = L.row_ptr[o]; k < L.row_ptr[o + 1]; k++) {
                    int j = L.col[k];
                    double v = x[(size_t)b * L.in + j] * (double)__half2float(L.scale[(size_t)(j / L.group) * L.out + o]) * L.offset[k];
                    sum += v; abs += std::fabs(v);
                }
            double d = std::fabs(y[(size_t)b * L.out + o] - sum);
            double rel = d == 0 ? 0 : (abs > 0 ? d / abs : INFINITY);
            if (!(rel <= worst) ) worst = rel;  // NaN propagates as a failure
            if (std::isnan(y[(size_t)b * L.out + o])) worst = INFINITY;
        }
    cases++;
    if (!(worst <= 1e-5)) {
        failures++;
        printf("FAIL gemv_tc %s batch %d (compiled %d) splits %d: max |dy|/sum|x*w| = %.3g\n", what, batch, NB, splits, worst);
    }
}

template <int BITS>
static void all_batches(Layer &L, std::mt19937_64 &rng, const char *what) {
    repack(L);
    int chunks = L.k_pad / 256;
    for (int splits : {1, chunks}) {
        check<BITS, 1>(L, rng, 1, splits, what);
        check<BITS, 2>(L, rng, 2, splits, what);
        check<BITS, 4>(L, rng, 3, splits, what);
        check<BITS, 8>(L, rng, 8, splits, what);
        check<BITS, 16>(L, rng, 16, splits, what);
        check<BITS, 16>(L, rng, 11, splits, what);
    }
}

static Layer random_layer(std::mt19937_64 &rng, int bits, int in, int out, int group, int gmode, bool outliers) {
    Layer L{};
    L.bits = bits; L.in = in; L.out = out; L.group = group; L.groups = (in + group - 1) / group;
    int maxq = (1 << bits) - 1;
    L.codes.resize((size_t)out * in);
    for (auto &c : L.codes) c = (int)(rng() % (maxq + 1));
    L.gidx.resize(in);
    for (int i = 0; i < in; i++) L.gidx[i] = i / group;
    if (gmode == 1) std::shuffle(L.gidx.begin(), L.gidx.end(), rng);
    if (gmode == 2) for (auto &g : L.gidx) g = (int)(rng() % L.groups);
    L.zero.resize((size_t)L.groups * out);
    L.scale.resize((size_t)L.groups * out);
    std::normal_distribution<double> nd;
    for (size_t k = 0; k < L.zero.size(); k++) {
        L.zero[k] = (int)(rng() % (maxq + 1));
        L.scale[k] = __float2half_rn((float)(0.01 * std::exp(nd(rng))));
    }
    if (outliers) {
        L.row_ptr.assign(out + 1, 0);
        for (int o = 0; o < out; o++) {
            for (int j = 0; j < in; j++)
                if (rng() % 100 == 0) {
                    int z = L.zero[(size_t)(j / group) * out + o];
                    L.codes[(size_t)o * in + j] = z;
                    L.col.push_back(j);
                    L.offset.push_back(rng() % 2 ? maxq - z + 1 + (int)(rng() % 40) : -z - 1 - (int)(rng() % 40));
                }
            L.row_ptr[o + 1] = (int)L.col.size();
        }
    }
    return L;
}

int main() {
    std::mt19937_64 rng(20261204);
    const char *modes[] = {"natural groups", "act-order g_idx", "uneven g_idx"};
    for (int mode = 0; mode < 3; mode++) {
        char what[128];
        Layer a = random_layer(rng, 2, 304, 40, 48, mode, false); snprintf(what, sizeof what, "2-bit 40x304 g48 %s", modes[mode]); all_batches<2>(a, rng, what);
        Layer b = random_layer(rng, 3, 352, 37, 32, mode, false); snprintf(what, sizeof what, "3-bit 37x352 g32 %s", modes[mode]); all_batches<3>(b, rng, what);
        Layer c = random_layer(rng, 4, 600, 72, 128, mode, false); snprintf(what, sizeof what, "4-bit 72x600 g128 %s", modes[mode]); all_batches<4>(c, rng, what);
        Layer d = random_layer(rng, 8, 300, 21, 100, mode, false); snprintf(what, sizeof what, "8-bit 21x300 g100 %s", modes[mode]); all_batches<8>(d, rng, what);
    }
    Layer e = random_layer(rng, 4, 1000, 33, 1000, 0, false); all_batches<4>(e, rng, "4-bit 33x1000 per channel");
    Layer f = random_layer(rng, 3, 301, 29, 64, 0, true); all_batches<3>(f, rng, "SSQR 3-bit 29x301 g64 1% outliers");
    Layer h = random_layer(rng, 4, 517, 18, 128, 0, true); all_batches<4>(h, rng, "SSQR 4-bit 18x517 g128 1% outliers");
    printf("gemv_tc emulation: %d cases, %d failed\n", cases, failures);
    return failures ? 1 : 0;
}
