package org.babaiquant.core;

import java.util.stream.IntStream;

/**
 * The factorisation GPTQ runs on: for processing order P and damping λ, {@code U} = the upper Cholesky factor of
 * {@code (H_P + λI)⁻¹} (GPTQ's {@code Hinv}), computed without forming the inverse.
 *
 * <p>Why this route: write {@code M = J·H_P·J} (J reverses the order, so M is H in Babai's basis order) and
 * {@code M = L·Lᵀ}. Then {@code H_P = V·Vᵀ} with {@code V = J·L·J} upper triangular, hence
 * {@code H_P⁻¹ = V⁻ᵀ·V⁻¹} and {@code U = V⁻¹ = J·L⁻¹·J}. One Cholesky and one triangular inverse
 * (≈ 2n³/3 flops, both through {@link DenseKernels}) instead of GPTQ's Cholesky, Cholesky-inverse and second Cholesky
 * (≈ 4n³/3). As a by-product, {@code Lᵀ} is the R of the QR of the damped basis in Babai order, and
 * {@code D_k = 1/U_kk² = L_{n-1-k,n-1-k}²}. On a flat row-major array {@code J·X·J} is the array reversed, so U
 * costs no extra pass over memory beyond one in-place reversal.
 *
 * <p>Damping: {@code λ = percdamp · mean(diag H)}; when the factorisation fails the percentage is multiplied by 10,
 * at most {@code maxTries} times, and what was finally used is recorded.
 */
public final class DampedFactor {
    /** Upper triangle valid: {@code U[i][j]}, {@code j ≥ i}, in processing order. */
    public final double[][] u;
    public final double percdamp;
    public final double lambda;
    public final int attempts;
    /** tr(D) = Σ_k 1/U_kk²: the Gram–Schmidt squared lengths of the damped basis. */
    public final double traceD;

    private DampedFactor(double[][] u, double percdamp, double lambda, int attempts, double traceD) {
        this.u = u;
        this.percdamp = percdamp;
        this.lambda = lambda;
        this.attempts = attempts;
        this.traceD = traceD;
    }

    /** Result of {@link #choleskyBabaiOrder}: L with {@code J·(H_P+λI)·J = L·Lᵀ}. */
    public record Lower(double[][] l, double percdamp, double lambda, int attempts) {}

    /**
     * The same factor as {@link DampedFactor}, U kept as one flat row-major {@code n×n} array (strict lower triangle
     * zero): what the solver sweeps over, without one array per row.
     */
    public record Flat(int n, double[] u, double percdamp, double lambda, int attempts, double traceD) {
        /** {@code U[i][j]}. */
        public double u(int i, int j) {
            return u[i * n + j];
        }
    }

    /** As {@link Lower}, with L flat row-major (strict upper triangle zero). */
    record FlatLower(int n, double[] l, double percdamp, double lambda, int attempts) {}

    /**
     * Lower Cholesky factor of the damped Hessian in Babai basis order {@code reverse(perm)}, escalating damping.
     *
     * @throws NotPositiveDefiniteException when even the last escalation fails
     */
    public static Lower choleskyBabaiOrder(double[][] h, int[] perm, double percdamp, int maxTries) {
        return choleskyBabaiOrder(h, perm, percdamp, maxTries, DenseKernels.get());
    }

    /** As {@link #choleskyBabaiOrder(double[][], int[], double, int)}, on the given kernels. */
    public static Lower choleskyBabaiOrder(double[][] h, int[] perm, double percdamp, int maxTries,
                                           DenseKernels kernels) {
        FlatLower lo = choleskyFlat(h, perm, percdamp, maxTries, kernels);
        return new Lower(Dense.unflatten(lo.l(), lo.n(), lo.n()), lo.percdamp(), lo.lambda(), lo.attempts());
    }

    static FlatLower choleskyFlat(double[][] h, int[] perm, double percdamp, int maxTries, DenseKernels kernels) {
        int n = h.length;
        double meanDiag = 0;
        for (int j = 0; j < n; j++) {
            meanDiag += h[j][j];
        }
        meanDiag /= n;
        double pd = percdamp;
        double[] m = new double[Dense.checkedSize(n, n)];
        for (int attempt = 1; attempt <= maxTries; attempt++) {
            double lambda = pd * meanDiag;
            // M = J·(H_P + λI)·J, lower triangle; the strict upper triangle stays zero
            IntStream.range(0, n).parallel().forEach(a -> {
                double[] ha = h[perm[n - 1 - a]];
                int row = a * n;
                for (int b = 0; b <= a; b++) {
                    m[row + b] = ha[perm[n - 1 - b]];
                }
                m[row + a] += lambda;
            });
            if (kernels.choleskyLower(m, n)) {
                return new FlatLower(n, m, pd, lambda, attempt);
            }
            pd *= 10;
        }
        throw new NotPositiveDefiniteException("Hessian is not positive definite even with damping "
                + (pd / 10) + " × mean(diag H) (mean diag " + meanDiag + ", " + maxTries
                + " tries from " + percdamp + "): it is not a Gram matrix XᵀX of real inputs");
    }

    /** GPTQ's {@code Hinv} for processing order {@code perm}. */
    public static DampedFactor of(double[][] h, int[] perm, double percdamp, int maxTries) {
        Flat f = flat(h, perm, percdamp, maxTries, DenseKernels.get());
        return new DampedFactor(Dense.unflatten(f.u(), f.n(), f.n()), f.percdamp(), f.lambda(), f.attempts(),
                f.traceD());
    }

    /** GPTQ's {@code Hinv} for processing order {@code perm}, flat, on the kernels {@link DenseKernels#get()}. */
    public static Flat flat(double[][] h, int[] perm, double percdamp, int maxTries) {
        return flat(h, perm, percdamp, maxTries, DenseKernels.get());
    }

    /** GPTQ's {@code Hinv} for processing order {@code perm}, flat, on the given kernels. */
    public static Flat flat(double[][] h, int[] perm, double percdamp, int maxTries, DenseKernels kernels) {
        FlatLower lo = choleskyFlat(h, perm, percdamp, maxTries, kernels);
        double[] x = lo.l();
        int n = lo.n();
        double traceD = 0;
        for (int k = 0; k < n; k++) {
            traceD += x[k * n + k] * x[k * n + k];
        }
        kernels.invertLower(x, n);
        reverse(x);
        return new Flat(n, x, lo.percdamp(), lo.lambda(), lo.attempts(), traceD);
    }

    /**
     * In place: {@code U[i][j] = X[n-1-i][n-1-j]}. On a row-major {@code n×n} array that index map is
     * {@code f ↦ n²−1−f}, the reversal of the array, which sends the lower triangle of X onto the upper one of U.
     */
    static void reverse(double[] x) {
        int len = x.length;
        int half = len / 2;
        int chunk = 1 << 16;
        IntStream.range(0, (half + chunk - 1) / chunk).parallel().forEach(c -> {
            int end = Math.min(half, (c + 1) * chunk);
            for (int i = c * chunk; i < end; i++) {
                double t = x[i];
                x[i] = x[len - 1 - i];
                x[len - 1 - i] = t;
            }
        });
    }
}
