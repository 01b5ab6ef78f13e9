package org.babaiquant.core;

import java.util.stream.IntStream;

/**
 * GPTQ as the reference implementation states it (IST-DASLab {@code gptq.py}, {@code fasterquant}): GPTQ's chain
 * {@code Hinv = cholesky_upper(cholesky_inverse(cholesky(H_P + λI)))} and the unblocked column loop
 * <pre>
 *   q_k = s·(clamp(rint(w̃_k/s) + z) − z);  e_k = (w̃_k − q_k)/U_kk;  w̃_j −= e_k·U_kj (j &gt; k)
 * </pre>
 * on the pure-Java kernels. The independent reference the production solver (one Cholesky, nearest plane on Ũ,
 * blocked) is checked against: it shares only the preparation (validation, dead columns, grid, order) with it.
 */
public final class ClassicGptq {
    private ClassicGptq() {}

    public static QuantizedLayer quantize(double[][] w0, double[][] h0, GptqSolver.Options opt, QuantGrid fixedGrid) {
        GptqSolver.Prepared p = GptqSolver.prepare(w0, h0, opt, fixedGrid);
        double[][] w = p.w();
        double[][] h = p.h();
        int[] perm = p.perm();
        QuantGrid grid = p.grid();
        LayerReport rep = p.report();
        int rows = w.length;
        int n = h.length;
        Chain chain = chain(h, perm, opt);
        double[] u = chain.u();
        double pd = chain.percdamp();
        double mean = chain.meanDiag();
        int attempt = chain.attempts();
        rep.percdampUsed = pd;
        rep.lambda = pd * mean;
        rep.dampAttempts = attempt;
        double traceD = 0;
        for (int k = 0; k < n; k++) {
            traceD += 1 / (u[k * n + k] * u[k * n + k]);
        }
        rep.traceD = traceD;
        int[][] codes = new int[rows][n];
        double[][] dq = new double[rows][n];
        double[] uf = u;
        IntStream.range(0, rows).parallel().forEach(r -> {
            double[] x = new double[n];
            for (int i = 0; i < n; i++) {
                x[i] = w[r][perm[i]];
            }
            double loss = 0;
            double bound = 0;
            int clipped = 0;
            for (int k = 0; k < n; k++) {
                double s = grid.scale(r, perm[k]);
                double z = grid.zero(r, perm[k]);
                double c = QuantGrid.quantizeUnclipped(x[k], s, z);
                if (opt.clip() && (c < 0 || c > grid.maxq)) {
                    c = Math.min(Math.max(c, 0), grid.maxq);
                    clipped++;
                }
                double q = QuantGrid.dequantize(c, s, z);
                double d = uf[k * n + k];
                double e = (x[k] - q) / d;
                loss += e * e;
                bound += 0.25 * s * s / (d * d);
                for (int j = k + 1; j < n; j++) {
                    x[j] -= e * uf[k * n + j];
                }
                codes[r][perm[k]] = (int) c;
                dq[r][perm[k]] = q;
            }
            rep.rowLoss[r] = loss;
            rep.rowBound[r] = bound;
            rep.rowClipped[r] = clipped;
        });
        rep.bitsPerWeight = GptqSolver.checkpointBitsPerWeight(rows, n, grid, opt.order() != ColumnOrder.NATURAL);
        return new QuantizedLayer(codes, grid, perm, dq, rep);
    }

    /** The chain's result for one (H, order, damping rule): U and the damping that made it work. */
    private record Chain(double[][] h, int[] perm, double percdampRequested, int maxTries, double[] u,
                         double percdamp, double meanDiag, int attempts) {}

    /** The last chain computed: tests quantize one layer on many grids and clip modes, the factor is the same. */
    private static Chain last;

    private static synchronized Chain chain(double[][] h, int[] perm, GptqSolver.Options opt) {
        if (last != null && last.h() == h && java.util.Arrays.equals(last.perm(), perm)
                && last.percdampRequested() == opt.percdamp() && last.maxTries() == opt.maxDampTries()) {
            return last;
        }
        int n = h.length;
        double mean = 0;
        for (int j = 0; j < n; j++) {
            mean += h[j][j];
        }
        mean /= n;
        double pd = opt.percdamp();
        for (int attempt = 1; attempt <= opt.maxDampTries(); attempt++, pd *= 10) {
            double[] u = hinv(h, perm, pd * mean);
            if (u != null) {
                last = new Chain(h, perm.clone(), opt.percdamp(), opt.maxDampTries(), u, pd, mean, attempt);
                return last;
            }
        }
        throw new NotPositiveDefiniteException("classic GPTQ: not positive definite after " + opt.maxDampTries()
                + " tries");
    }

    /** GPTQ's chain on {@code H_P + λI}: U flat row-major (upper), or null when a Cholesky fails. */
    static double[] hinv(double[][] h, int[] perm, double lambda) {
        Dense k = Dense.INSTANCE;
        int n = perm.length;
        double[] a = new double[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                a[i * n + j] = h[perm[i]][perm[j]];
            }
            a[i * n + i] += lambda;
        }
        if (!k.choleskyLower(a, n)) { // torch.linalg.cholesky
            return null;
        }
        k.invertLower(a, n); // torch.cholesky_inverse: (L·Lᵀ)⁻¹ = L⁻ᵀ·L⁻¹
        double[] inv = new double[n * n];
        k.gemm(true, false, n, n, n, 1.0, a, 0, n, a, 0, n, inv, 0, n);
        if (!k.choleskyLower(inv, n)) { // torch.linalg.cholesky(upper=True): U = L₂ᵀ
            return null;
        }
        double[] u = new double[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = i; j < n; j++) {
                u[i * n + j] = inv[j * n + i];
            }
        }
        return u;
    }
}
