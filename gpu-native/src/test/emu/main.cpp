// Host emulation of src/main/cuda/*.cu (see run.sh): each kernel against a host reference; exit status 1 on a mismatch.
#include "shim.h"
#include "k_hessian.h"
#include "k_solver.h"
#include "k_cholesky.h"
#include "k_gemv.h"
#include <cstdio>
#include <random>
static std::mt19937_64 rng(12345);
static double gauss() { static std::normal_distribution<double> d; return d(rng); }
static int failures = 0;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL: " __VA_ARGS__); printf("\n"); } } while (0)

// ---------------- Hessian ----------------
static void testHessian(int tokens, int n) {
    std::vector<float> x((size_t)tokens * n);
    for (auto &v : x) v = (float)gauss();
    std::vector<double> h((size_t)n * n, 0.0);
    int tiles = (n + 127) / 128;
    // two launches, like two add() calls
    int t1 = tokens / 3;
    launch({(unsigned)tiles, (unsigned)tiles}, {256}, [&] { hessian_syrk_f32(x.data(), t1, n, h.data()); });
    launch({(unsigned)tiles, (unsigned)tiles}, {256}, [&] { hessian_syrk_f32(x.data() + (size_t)t1 * n, tokens - t1, n, h.data()); });
    std::vector<double> ref((size_t)n * n, 0.0);
    for (int t = 0; t < tokens; t++) for (int i = 0; i < n; i++) for (int j = i; j < n; j++)
        ref[(size_t)i * n + j] += (double)x[(size_t)t * n + i] * x[(size_t)t * n + j];
    double worst = 0; long lowerTouched = 0;
    for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) {
        if (j < i) { if (h[(size_t)i * n + j] != 0) lowerTouched++; continue; }
        double s = sqrt(ref[(size_t)i * n + i] * ref[(size_t)j * n + j]);
        worst = std::max(worst, fabs(h[(size_t)i * n + j] - ref[(size_t)i * n + j]) / s);
    }
    printf("hessian f32 %dx%d: worst %.2e, lower touched %ld\n", tokens, n, worst, lowerTouched);
    CHECK(worst <= 1e-6 && lowerTouched == 0, "hessian f32");
    // f16 path: inputs as halves
    std::vector<__half> xh(x.size());
    std::vector<float> xf(x.size());
    for (size_t i = 0; i < x.size(); i++) { uint16_t b = (uint16_t)(rng() & 0x3FFF); if (rng() & 1) b |= 0x8000; xh[i].x = b; xf[i] = half_bits_to_float(b); }
    std::fill(h.begin(), h.end(), 0.0); std::fill(ref.begin(), ref.end(), 0.0);
    launch({(unsigned)tiles, (unsigned)tiles}, {256}, [&] { hessian_syrk_f16(xh.data(), tokens, n, h.data()); });
    for (int t = 0; t < tokens; t++) for (int i = 0; i < n; i++) for (int j = i; j < n; j++)
        ref[(size_t)i * n + j] += (double)xf[(size_t)t * n + i] * xf[(size_t)t * n + j];
    worst = 0;
    for (int i = 0; i < n; i++) for (int j = i; j < n; j++) {
        double s = sqrt(ref[(size_t)i * n + i] * ref[(size_t)j * n + j]);
        worst = std::max(worst, fabs(h[(size_t)i * n + j] - ref[(size_t)i * n + j]) / s);
    }
    printf("hessian f16 %dx%d: worst %.2e\n", tokens, n, worst);
    CHECK(worst <= 1e-6, "hessian f16");
}

// ---------------- solver: HostSweep port vs emulated kernels ----------------
// The C++ port of org.babaiquant.gpu.HostSweep (nearest plane on Ũ: accumulators A, residuals Δ), driven by
// LatticeSweep's loop, against gptq_block + dgemm_add (bit for bit) and against gptq_block + dgemm_tc (the DMMA path:
// codes equal except ties, losses within 1e-12 relative).
struct Host {
    int n, bs, m, groups, maxq; bool clip;
    std::vector<double> ut, w, a, scale, zero, delta, loss, bound; std::vector<int> groupOf, clipped; std::vector<unsigned char> codes;  // 1 byte per code when clipping, else int32
    void strip(int i1, int c1, int width) {
        for (int r = 0; r < m; r++) {
            long row = (long)r * n; double p[128];
            for (int j = 0; j < width; j++) p[j] = a[row + c1 + j];
            for (int i = 0; i < width; i++) {
                int col = c1 + i, g = groupOf[col];
                double s = scale[r * groups + g], z = zero[r * groups + g], d = ut[(long)col * n + col], r1 = 1.0 / d;
                double wk = w[row + col];
                double x = wk + p[i] * r1;
                double c = std::rint(x / s) + z;
                if (clip && (c < 0 || c > maxq)) { c = std::min(std::max(c, 0.0), (double)maxq); clipped[r]++; }
                double q = s * (c - z);
                double e = d * (x - q);
                loss[r] += e * e;
                bound[r] += 0.25 * s * s * (d * d);
                double dl = wk - q;
                if (clip) codes[row + col] = (unsigned char)(int)c; else { int ci = (int)c; memcpy(&codes[4 * (row + col)], &ci, 4); }
                delta[(long)r * bs + col - i1] = dl;
                for (int j = i + 1; j < width; j++) p[j] = std::fma(dl, ut[(long)col * n + c1 + j], p[j]);
            }
        }
    }
    void update(int i1, int c1, int k, int j0, int j1) {
        int a0 = c1 - i1;
        for (int r = 0; r < m; r++) for (int j = j0; j < j1; j++) {
            double acc = 0;
            for (int t = 0; t < k; t++) acc = std::fma(delta[(long)r * bs + a0 + t], ut[(long)(c1 + t) * n + j], acc);
            a[(long)r * n + j] += acc;
        }
    }
};
struct Dev : Host {
    bool tensorCores = false;
    void strip(int i1, int c1, int width) {
        launch({(unsigned)((m + 7) / 8)}, {128}, [&] {
            gptq_block(w.data(), a.data(), codes.data(), n, delta.data(), bs, ut.data(), n, scale.data(), zero.data(),
                       groups, groupOf.data(), m, i1, c1, width, clip ? 1 : 0, maxq, loss.data(), bound.data(), clipped.data());
        });
    }
    void update(int i1, int c1, int k, int j0, int j1) {
        int nc = j1 - j0;
        if (tensorCores) {
            launch({(unsigned)((nc + 63) / 64), (unsigned)((m + 63) / 64)}, {128}, [&] {
                dgemm_tc(0, 0, 0, m, nc, k, 1.0, delta.data() + (c1 - i1), bs, ut.data() + (long)c1 * n + j0, n, a.data() + j0, n);
            });
        } else {
            launch({(unsigned)((nc + 63) / 64), (unsigned)((m + 63) / 64)}, {256}, [&] {
                dgemm_add(m, nc, k, delta.data() + (c1 - i1), bs, ut.data() + (long)c1 * n + j0, n, a.data() + j0, n);
            });
        }
    }
};
template <class K> static void run(K &k) {
    int n = k.n, bs = k.bs;
    for (int i1 = 0; i1 < n; i1 += bs) {
        int i2 = std::min(n, i1 + bs);
        for (int c1 = i1; c1 < i2; c1 += 128) {
            int c2 = std::min(i2, c1 + 128);
            k.strip(i1, c1, c2 - c1);
            if (c2 < i2) k.update(i1, c1, c2 - c1, c2, i2);
        }
        if (i2 < n) k.update(i1, i1, i2 - i1, i2, n);
    }
}
static void testSolver(int m, int n, int bs, int gs, bool clip, bool tensorCores) {
    Host h; h.n = n; h.bs = bs; h.m = m; h.groups = (n + gs - 1) / gs; h.maxq = 15; h.clip = clip;
    h.ut.assign((size_t)n * n, 0.0);
    for (int i = 0; i < n; i++) { h.ut[(size_t)i * n + i] = 0.5 + 0.5 * fabs(gauss()); for (int j = i + 1; j < n; j++) h.ut[(size_t)i * n + j] = 0.1 * gauss(); }
    h.w.resize((size_t)m * n); for (auto &v : h.w) v = 0.02 * gauss();
    h.a.assign((size_t)m * n, 0.0);
    h.groupOf.resize(n); std::vector<int> perm(n); for (int i = 0; i < n; i++) perm[i] = i; std::shuffle(perm.begin(), perm.end(), rng);
    for (int i = 0; i < n; i++) h.groupOf[i] = perm[i] / gs;
    h.scale.resize((size_t)m * h.groups); h.zero.resize(h.scale.size());
    for (size_t i = 0; i < h.scale.size(); i++) { h.scale[i] = 0.004 * (1 + fabs(gauss())); h.zero[i] = 7 + (int)(rng() % 3); }
    h.delta.assign((size_t)m * bs, 0.0); h.loss.assign(m, 0.0); h.bound.assign(m, 0.0); h.codes.assign((size_t)m * n * (clip ? 1 : 4), 0); h.clipped.assign(m, 0);
    Dev d; static_cast<Host &>(d) = h; d.tensorCores = tensorCores;
    run(h); run(d);
    long da = 0, dc = 0, dl = 0; double worstLoss = 0;
    for (size_t i = 0; i < h.a.size(); i++) if (memcmp(&h.a[i], &d.a[i], 8)) da++;
    for (size_t i = 0; i < h.codes.size(); i++) if (h.codes[i] != d.codes[i]) dc++;
    for (int r = 0; r < m; r++) {
        if (h.loss[r] != d.loss[r] || h.bound[r] != d.bound[r] || h.clipped[r] != d.clipped[r]) dl++;
        worstLoss = std::max(worstLoss, fabs(h.loss[r] - d.loss[r]) / h.loss[r]);
    }
    long clippedTotal = 0; for (int c : h.clipped) clippedTotal += c;
    printf("solver %s m=%d n=%d bs=%d gs=%d clip=%d: A differ %ld, codes differ %ld, row stats differ %ld (clipped %ld), worst loss rel %.1e\n",
           tensorCores ? "dmma" : "exact", m, n, bs, gs, clip, da, dc, dl, clippedTotal, worstLoss);
    if (tensorCores) CHECK(dc == 0 && worstLoss <= 1e-12, "solver dmma");
    else CHECK(da == 0 && dc == 0 && dl == 0, "solver exact");
}

// ---------------- DMMA tile (dmma_f64.cuh through solver.cu's dgemm_tc) ----------------
// C += alpha·op(A)·op(B) against float64 sums on every transposition and triangle, with ragged m, n, k, leading
// dimensions wider than the operands, and a sentinel region that must stay untouched.
static void testDmma(int ta, int tb, int tri, int m, int n, int k, double alpha) {
    long lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
    std::vector<double> a((size_t)(ta ? k : m) * lda), b((size_t)(tb ? n : k) * ldb), c((size_t)m * ldc);
    for (auto &v : a) v = gauss();
    for (auto &v : b) v = gauss();
    for (auto &v : c) v = gauss();
    std::vector<double> c0 = c;
    launch({(unsigned)((n + 63) / 64), (unsigned)((m + 63) / 64)}, {128}, [&] {
        dgemm_tc(ta, tb, tri, m, n, k, alpha, a.data(), lda, b.data(), ldb, c.data(), ldc);
    });
    double worst = 0; long wrongSkip = 0, touched = 0;
    for (int i = 0; i < m; i++) for (int j = 0; j < ldc; j++) {
        double got = c[(size_t)i * ldc + j], was = c0[(size_t)i * ldc + j];
        bool inTile = j < n && !((tri == 1 && j / 64 > i / 64) || (tri == 2 && i / 64 > j / 64));
        if (!inTile) { if (memcmp(&got, &was, 8)) (j < n ? wrongSkip : touched)++; continue; }
        double s = 0, abs = 0;
        for (int l = 0; l < k; l++) {
            double x = ta ? a[(size_t)l * lda + i] : a[(size_t)i * lda + l];
            double y = tb ? b[(size_t)j * ldb + l] : b[(size_t)l * ldb + j];
            s += x * y; abs += fabs(x * y);
        }
        double d = fabs(was + alpha * s - got) / (fabs(was) + abs);
        if (!(d <= worst)) worst = d;
    }
    printf("dmma ta=%d tb=%d tri=%d %dx%dx%d alpha=%g: worst %.2e, skipped tiles written %ld, outside written %ld\n",
           ta, tb, tri, m, n, k, alpha, worst, wrongSkip, touched);
    CHECK(worst <= 1e-14 && wrongSkip == 0 && touched == 0, "dmma");
}

// ---------------- device Cholesky (cholesky.cu) ----------------
// The kernels in LatticeSweep's order (DeviceFactor.java) against a plain unblocked host Cholesky of the same gathered,
// damped matrix, reversed: Ũ to 1e-12 of max |Ũ|; with a pivot made negative, the flag names the first failing column.
static int hostCholesky(std::vector<double> &a, int n) {  // lower, in place; returns failing column + 1 or 0
    for (int j = 0; j < n; j++) {
        double d = a[(size_t)j * n + j];
        for (int q = 0; q < j; q++) d -= a[(size_t)j * n + q] * a[(size_t)j * n + q];
        if (!(d > 0)) return j + 1;
        double l = sqrt(d); a[(size_t)j * n + j] = l;
        for (int i = j + 1; i < n; i++) {
            double s = a[(size_t)i * n + j];
            for (int q = 0; q < j; q++) s -= a[(size_t)i * n + q] * a[(size_t)j * n + q];
            a[(size_t)i * n + j] = s / l;
        }
    }
    return 0;
}
static void testCholesky(int n, int tokens, int breakAt) {
    std::vector<double> x((size_t)tokens * n), h((size_t)n * n, 0.0);
    for (auto &v : x) v = gauss();
    for (int t = 0; t < tokens; t++) for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) h[(size_t)i * n + j] += x[(size_t)t * n + i] * x[(size_t)t * n + j];
    std::vector<int> perm(n); for (int i = 0; i < n; i++) perm[i] = i; std::shuffle(perm.begin(), perm.end(), rng);
    double lambda = 0.01 * tokens;
    if (breakAt >= 0) { int c = perm[n - 1 - breakAt]; h[(size_t)c * n + c] = -lambda - 5.0 * tokens; }
    std::vector<double> ref((size_t)n * n);
    for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) ref[(size_t)i * n + j] = h[(size_t)perm[n - 1 - i] * n + perm[n - 1 - j]] + (i == j ? lambda : 0.0);
    int refFlag = hostCholesky(ref, n);
    std::vector<double> a((size_t)n * n, NAN), ut((size_t)n * n, NAN), diag(n);
    int flag = 0;
    launch({(unsigned)((n + 31) / 32), (unsigned)((n + 7) / 8)}, {256}, [&] { chol_gather(h.data(), n, perm.data(), lambda, a.data()); });
    for (int k0 = 0; k0 < n; k0 += 64) {
        int b = std::min(64, n - k0), k2 = k0 + b;
        launch({1}, {256}, [&] { chol_diag(a.data(), n, k0, &flag); });
        if (k2 < n) {
            launch({(unsigned)((n - k2 + 127) / 128)}, {128}, [&] { chol_panel(a.data(), n, k0, &flag); });
            unsigned t = (unsigned)((n - k2 + 63) / 64);
            launch({t, t}, {128}, [&] { chol_update(n - k2, b, a.data() + (size_t)k2 * n + k0, n, a.data() + (size_t)k2 * n + k2, &flag); });
        }
    }
    if (breakAt >= 0) {
        printf("cholesky n=%d broken at %d: flag %d, host reference fails at %d\n", n, breakAt, flag, refFlag);
        CHECK(flag == refFlag && flag > 0, "cholesky flag");
        return;
    }
    launch({(unsigned)((n + 31) / 32), (unsigned)((n + 7) / 8)}, {256}, [&] { chol_reverse(a.data(), n, ut.data(), diag.data()); });
    double worst = 0, top = 0; long below = 0;
    for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) {
        double want = j >= i ? ref[(size_t)(n - 1 - i) * n + (n - 1 - j)] : 0.0, got = ut[(size_t)i * n + j];
        if (j < i && got != 0.0) below++;
        top = std::max(top, fabs(want));
        double d = fabs(want - got); if (!(d <= worst)) worst = d;
    }
    for (int i = 0; i < n; i++) if (diag[i] != ut[(size_t)i * n + i]) below++;
    printf("cholesky n=%d: flag %d, worst |dU|/max|U| %.2e, wrong zeros/diagonal %ld\n", n, flag, worst / top, below);
    CHECK(flag == 0 && refFlag == 0 && worst / top <= 1e-12 && below == 0, "cholesky");
}

// ---------------- GEMV ----------------
static void testGemv(int bits, int in, int out, int gs, int batch, bool outliers) {
    int per = 32 / bits, groups = (in + gs - 1) / gs; unsigned mask = (1u << bits) - 1;
    std::vector<unsigned> qw((size_t)in / per * out); for (auto &v : qw) v = (unsigned)rng();
    std::vector<__half> sc((size_t)groups * out); std::vector<unsigned char> zp((size_t)groups * out);
    for (size_t i = 0; i < sc.size(); i++) { sc[i].x = (uint16_t)(0x1000 + (rng() % 0x0C00)); zp[i] = (unsigned char)(rng() & mask); }
    std::vector<float> x((size_t)batch * in); for (auto &v : x) v = (float)gauss();
    std::vector<int> rp(out + 1, 0), col, off;
    if (outliers) for (int o = 0; o < out; o++) { for (int j = 0; j < in; j++) if (rng() % 100 == 0) { col.push_back(j); off.push_back((int)(rng() % 40) - 20); } rp[o + 1] = (int)col.size(); }
    const int SPLIT = 1024; int slices = (in + SPLIT - 1) / SPLIT;
    std::vector<float> partial((size_t)slices * 8 * out, NAN), y((size_t)batch * out, NAN);
    size_t shared = 4 * (8 * SPLIT + batch * (SPLIT / gs + 2));
    if (shared > sizeof(g_dyn_smem)) { printf("shared too big\n"); exit(1); }
    auto body = [&] {
        if (bits == 2) gemv_dense_b2(qw.data(), sc.data(), zp.data(), x.data(), partial.data(), in, out, gs, batch, SPLIT);
        if (bits == 4) gemv_dense_b4(qw.data(), sc.data(), zp.data(), x.data(), partial.data(), in, out, gs, batch, SPLIT);
        if (bits == 8) gemv_dense_b8(qw.data(), sc.data(), zp.data(), x.data(), partial.data(), in, out, gs, batch, SPLIT);
    };
    launch({(unsigned)((out + 255) / 256), (unsigned)slices}, {256}, body);
    launch({(unsigned)((out + 255) / 256)}, {256}, [&] {
        gemv_finish(partial.data(), slices, batch, out, y.data(), outliers ? rp.data() : nullptr, col.data(), off.data(), sc.data(), gs, x.data(), in);
    });
    double worst = 0;
    for (int b = 0; b < batch; b++) for (int o = 0; o < out; o++) {
        double s = 0, a = 0;
        for (int i = 0; i < in; i++) {
            int g = i / gs; unsigned q = (qw[(size_t)(i / per) * out + o] >> ((i % per) * bits)) & mask;
            double wv = (double)__half2float(sc[(size_t)g * out + o]) * ((int)q - (int)zp[(size_t)g * out + o]);
            s += x[(size_t)b * in + i] * wv; a += fabs(x[(size_t)b * in + i] * wv);
        }
        if (outliers) for (int k = rp[o]; k < rp[o + 1]; k++) { int j = col[k]; double wv = (double)__half2float(sc[(size_t)(j / gs) * out + o]) * off[k]; s += x[(size_t)b * in + j] * wv; a += fabs(x[(size_t)b * in + j] * wv); }
        double d = fabs(s - y[(size_t)b * out + o]) / a;
        if (!(d <= worst)) worst = d;  // NaN-propagating
    }
    printf("gemv %d-bit in=%d out=%d gs=%d batch=%d outliers=%d: worst %.2e\n", bits, in, out, gs, batch, outliers, worst);
    CHECK(worst <= 1e-5, "gemv");
}

int main() {
    setvbuf(stdout, nullptr, _IONBF, 0);
    testHessian(37, 300);
    testHessian(16, 128);
    for (int ta = 0; ta < 2; ta++) for (int tb = 0; tb < 2; tb++) testDmma(ta, tb, 0, 70, 80, 13, -1.0);
    testDmma(0, 0, 0, 64, 64, 8, 1.0);
    testDmma(1, 0, 1, 130, 130, 9, -1.0);
    testDmma(1, 0, 2, 129, 129, 3, 1.0);
    testDmma(0, 1, 1, 140, 70, 12, 0.5);
    testCholesky(130, 300, -1);
    testCholesky(64, 100, -1);
    testCholesky(140, 200, 70);
    testCholesky(130, 200, 0);
    testSolver(40, 200, 70, 32, true, false);
    testSolver(33, 300, 256, 16, false, false);
    testSolver(3, 64, 32, 64, true, false);
    testSolver(9, 200, 128, 32, true, true);
    testSolver(5, 150, 64, 150, false, true);
    testGemv(4, 2600, 300, 96, 3, false);
    testGemv(4, 1024, 257, 128, 1, true);
    testGemv(2, 2592, 260, 160, 8, true);
    testGemv(8, 3000, 100, 100, 2, false);
    testGemv(4, 2048, 100, 2048, 5, false);
    testGemv(8, 1028, 64, 4, 8, true);
    printf(failures ? "FAILURES %d\n" : "all ok\n", failures);
    return failures != 0;
}
