package org.babaiquant.core;

/**
 * The factorisation GPTQ runs on: for processing order P and damping λ, {@code U} = the upper Cholesky factor of
 * {@code (H_P + λI)⁻¹} (GPTQ's {@code Hinv}), computed without forming the inverse.
 *
 * <p>Why this route: write {@code M = J·H_P·J} (J reverses the order, so M is H in Babai's basis order) and
 * {@code M = L·Lᵀ}. Then {@code H_P = V·Vᵀ} with {@code V = J·L·J} upper triangular, hence
 * {@code H_P⁻¹ = V⁻ᵀ·V⁻¹} and {@code U = V⁻¹ = J·L⁻¹·J}. One Cholesky and one triangular inverse
 * (≈ 2n³/3 flops) instead of GPTQ's Cholesky, Cholesky-inverse and second Cholesky (≈ 4n³/3). As a by-product,
 * {@code Lᵀ} is the R of the QR of the damped basis in Babai order, and {@code D_k = 1/U_kk² = L_{n-1-k,n-1-k}²}.
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
     * Lower Cholesky factor of the damped Hessian in Babai basis order {@code reverse(perm)}, escalating damping.
     *
     * @throws NotPositiveDefiniteException when even the last escalation fails
     */
    public static Lower choleskyBabaiOrder(double[][] h, int[] perm, double percdamp, int maxTries) {
        int n = h.length;
        double meanDiag = 0;
        for (int j = 0; j < n; j++) {
            meanDiag += h[j][j];
        }
        meanDiag /= n;
        double pd = percdamp;
        for (int attempt = 1; attempt <= maxTries; attempt++) {
            double lambda = pd * meanDiag;
            double[][] m = new double[n][n];
            for (int a = 0; a < n; a++) {
                double[] ha = h[perm[n - 1 - a]];
                double[] ma = m[a];
                for (int b = 0; b <= a; b++) {
                    ma[b] = ha[perm[n - 1 - b]];
                }
                ma[a] += lambda;
            }
            if (Dense.choleskyLower(m)) {
                return new Lower(m, pd, lambda, attempt);
            }
            pd *= 10;
        }
        throw new NotPositiveDefiniteException("Hessian is not positive definite even with damping "
                + (pd / 10) + " × mean(diag H) (mean diag " + meanDiag + ", " + maxTries
                + " tries from " + percdamp + "): it is not a Gram matrix XᵀX of real inputs");
    }

    /** GPTQ's {@code Hinv} for processing order {@code perm}. */
    public static DampedFactor of(double[][] h, int[] perm, double percdamp, int maxTries) {
        Lower lo = choleskyBabaiOrder(h, perm, percdamp, maxTries);
        double[][] x = lo.l();
        int n = x.length;
        double traceD = 0;
        for (int k = 0; k < n; k++) {
            traceD += x[k][k] * x[k][k];
        }
        Dense.invertLower(x);
        reverseLowerToUpper(x);
        return new DampedFactor(x, lo.percdamp(), lo.lambda(), lo.attempts(), traceD);
    }

    /**
     * In place: {@code U[i][j] = X[n-1-i][n-1-j]} for {@code j ≥ i}, strict lower part zeroed. The map
     * {@code (a,b) ↦ (n-1-a, n-1-b)} sends the strict lower triangle onto the strict upper one (disjoint, so a plain
     * copy is safe) and reverses the diagonal (a swap).
     */
    static void reverseLowerToUpper(double[][] x) {
        int n = x.length;
        for (int a = 0; a < n; a++) {
            double[] xa = x[a];
            for (int b = 0; b < a; b++) {
                x[n - 1 - a][n - 1 - b] = xa[b];
            }
        }
        for (int a = 0; a < n; a++) {
            java.util.Arrays.fill(x[a], 0, a, 0.0);
        }
        for (int a = 0; a < n / 2; a++) {
            double t = x[a][a];
            x[a][a] = x[n - 1 - a][n - 1 - a];
            x[n - 1 - a][n - 1 - a] = t;
        }
    }
}
