// Desk-check of hessian_dmma.cu on the host (shim.h, with its emu_dmma_m8n8k4): float32 activations widened, XᵀX on
// the DMMA tile, two launches accumulating into the same H; every upper entry within HessianTwin's contract
// (N + L)·2⁻⁵³·Σ|x·x| of the float64-exact sum (products are exact; the reference sums in long double), lower tiles
// untouched. Run by gemv_tc_run.sh.
#include "shim.h"
#include "k_hessian_dmma.h"
#include <cstdio>
#include <random>
int main() {
    std::mt19937_64 rng(20261204);
    std::normal_distribution<double> nd;
    int fails = 0, cases = 0;
    for (auto [n, tokens] : {std::pair{1, 37}, std::pair{70, 300}, std::pair{131, 45}}) {
        std::vector<float> xf((size_t)tokens * n);
        for (auto &v : xf) v = (float)(nd(rng) * std::exp(2 * nd(rng)));
        std::vector<double> x((size_t)tokens * n), h((size_t)n * n, -7.0);
        for (int i = 0; i < n; i++) for (int j = i; j < n; j++) h[(size_t)i * n + j] = 0.0;
        int t1 = tokens / 3;  // two launches: tokens [0, t1) and [t1, tokens)
        launch({(unsigned)((x.size() + 255) / 256)}, {256}, [&] { hessian_widen_f32(xf.data(), (long)x.size(), x.data()); });
        int nt = (n + 63) / 64;
        launch({(unsigned)(nt * (nt + 1) / 2)}, {DMMA_THREADS}, [&] { hessian_dmma(x.data(), t1, n, h.data()); });
        launch({(unsigned)(nt * (nt + 1) / 2)}, {DMMA_THREADS}, [&] { hessian_dmma(x.data() + (size_t)t1 * n, tokens - t1, n, h.data()); });
        double worst = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                if (j < i) {
                    if (j / 64 < i / 64 && h[(size_t)i * n + j] != -7.0) { printf("FAIL lower tile (%d, %d) written\n", i, j); fails++; }
                    continue;
                }
                long double s = 0; double a = 0;
                for (int t = 0; t < tokens; t++) { double p = (double)xf[(size_t)t * n + i] * xf[(size_t)t * n + j]; s += p; a += std::fabs(p); }
                double bound = (tokens + 2) * 0x1p-53 * a;
                double e = (double)std::fabs((long double)h[(size_t)i * n + j] - s);
                double r = e == 0 ? 0 : (bound > 0 ? e / bound : INFINITY);
                if (!(r <= worst)) worst = r;
            }
        cases++;
        if (!(worst <= 1)) { fails++; printf("FAIL hessian_dmma n %d tokens %d: error / contract bound %.3g\n", n, tokens, worst); }
    }
    printf("hessian_dmma emulation: %d cases, %d failed\n", cases, fails);
    return fails != 0;
}
