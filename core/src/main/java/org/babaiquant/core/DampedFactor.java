package org.babaiquant.core;

import java.util.stream.IntStream;

/**
 * The factorisation the lattice algorithms run on, for processing order P and damping λ. Write
 * {@code M = J·(H_P + λI)·J} (J reverses the order, so M is H in Babai's basis order) and {@code M = L·Lᵀ}. Then
 * {@code Ũ = J·L·J} is upper triangular with {@code H_P + λI = Ũ·Ũᵀ}, and GPTQ's {@code Hinv} (the upper Cholesky factor
 * of {@code (H_P + λI)⁻¹}) is {@code U = Ũ⁻¹ = J·L⁻¹·J}.
 * <ul>
 *   <li>{@link Upper} ({@link #upper}, {@link #upperInPlace}, {@link #minPivot}): Ũ itself, one Cholesky (n³/3 flops)
 *       and an in-place reversal, no inverse: what the solver sweeps on ({@link NearestPlaneSweep}). For min-pivot the
 *       pivoted Cholesky that chooses the order is that L.</li>
 *   <li>{@link Flat} / {@link #of} ({@link #flat}, {@link #inverse}): GPTQ's U, one more triangular inverse, for code
 *       written in GPTQ's own terms (the device sweep, tests). GPTQ's own chain — Cholesky, Cholesky-inverse, second
 *       Cholesky (≈ 4n³/3) — is kept only as the tests' reference ({@code ClassicGptq}).</li>
 * </ul>
 * {@code Lᵀ} is the R of the QR of the damped basis in Babai order, and {@code D_k = 1/U_kk² = Ũ_kk²}. On a flat
 * row-major array {@code J·X·J} is the array reversed, so Ũ costs no extra pass over memory beyond that reversal.
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
        double[] diag = new double[n];
        for (int j = 0; j < n; j++) {
            diag[j] = h[j][j];
        }
        double[] m = new double[Dense.checkedSize(n, n)];
        Damping d = escalate(mean(diag), percdamp, maxTries, (lambda, attempt) -> {
            // M = J·(H_P + λI)·J, lower triangle; the strict upper triangle stays zero
            IntStream.range(0, n).parallel().forEach(a -> {
                double[] ha = h[perm[n - 1 - a]];
                int row = a * n;
                for (int b = 0; b <= a; b++) {
                    m[row + b] = ha[perm[n - 1 - b]];
                }
                m[row + a] += lambda;
            });
            return kernels.choleskyLower(m, n);
        });
        return new FlatLower(n, m, d.percdamp(), d.lambda(), d.attempt());
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
     * The one-Cholesky factor the solver sweeps on: {@code Ũ} upper triangular with {@code H_P + λI = Ũ·Ũᵀ}, i.e.
     * {@code Ũ = J·L·J} for {@code J·(H_P + λI)·J = L·Lᵀ}; GPTQ's {@code U} is {@code Ũ⁻¹} ({@code U_kk = 1/Ũ_kk}),
     * never formed. Flat row-major n×n; only the upper triangle ({@code j ≥ i}) is the factor, the strict lower
     * triangle holds leftovers (zeros, or the Hessian's entries when factorised in place).
     */
    public record Upper(int n, double[] ut, double percdamp, double lambda, int attempts, double traceD) {
        /** {@code Ũ[i][j]}, {@code j ≥ i}. */
        public double ut(int i, int j) {
            return ut[i * n + j];
        }
    }

    /**
     * GPTQ's {@code U = Ũ⁻¹} from the factor, in the factor's memory (which {@code f} then no longer holds): for a
     * sweep written in GPTQ's own terms (the device sweep), so that its damping, order and tr(D) are the solver's.
     * The same values as {@link #flat} for the same order, bit for bit.
     */
    public static Flat inverse(Upper f, DenseKernels kernels) {
        double[] x = f.ut();
        reverse(x);
        kernels.invertLower(x, f.n());
        reverse(x);
        return new Flat(f.n(), x, f.percdamp(), f.lambda(), f.attempts(), f.traceD());
    }

    /** The min-pivot order (processing order, the reverse of the pivot sequence) and the factor that chose it. */
    public record Pivoted(int[] perm, Upper factor) {}

    /** {@link Upper} for processing order {@code perm}: one Cholesky, one in-place reversal, no inverse. */
    public static Upper upper(double[][] h, int[] perm, double percdamp, int maxTries, DenseKernels kernels) {
        FlatLower lo = choleskyFlat(h, perm, percdamp, maxTries, kernels);
        double[] x = lo.l();
        double traceD = traceOfSquares(x, lo.n());
        reverse(x);
        return new Upper(lo.n(), x, lo.percdamp(), lo.lambda(), lo.attempts(), traceD);
    }

    /**
     * {@link Upper} computed in the memory of {@code h} (flat row-major n×n, symmetric, both triangles given), which is
     * overwritten: the matrix is permuted to {@code J·H_P·J} in place, its lower triangle factorised and the array
     * reversed. No second n² array: the strict upper triangle (never written by the factorisation) and the saved
     * diagonal are what a damping escalation restarts from.
     */
    public static Upper upperInPlace(double[] h, int n, int[] perm, double percdamp, int maxTries,
                                     DenseKernels kernels) {
        int[] sigma = new int[n];
        for (int a = 0; a < n; a++) {
            sigma[a] = perm[n - 1 - a];
        }
        double meanDiag = mean(diagonal(h, n)); // summed in the original order, as every other route
        permuteSymmetric(h, n, sigma);
        double[] diag = diagonal(h, n);
        Damping d = escalate(meanDiag, percdamp, maxTries, (lambda, attempt) -> {
            if (attempt > 1) {
                restoreLower(h, n, diag);
            }
            addToDiagonal(h, n, lambda);
            return kernels.choleskyLower(h, n);
        });
        double traceD = traceOfSquares(h, n);
        reverse(h);
        return new Upper(n, h, d.percdamp(), d.lambda(), d.attempt(), traceD);
    }

    /**
     * The paper's min-pivot order and its factor in one pivoted Cholesky of {@code H + λI} (see {@link ColumnOrder}):
     * the pivot sequence is Babai's basis order, so the pivoted factor already is {@code J·L·J}'s L for the processing
     * order (its reverse), and no second factorisation is needed. Escalates the damping as {@link #upper}.
     */
    public static Pivoted minPivot(double[][] h, double percdamp, int maxTries, DenseKernels kernels) {
        int n = h.length;
        double[] a = new double[Dense.checkedSize(n, n)];
        IntStream.range(0, n).parallel().forEach(i -> System.arraycopy(h[i], 0, a, i * n, n));
        return minPivotInPlace(a, n, percdamp, maxTries, kernels);
    }

    /** As {@link #minPivot(double[][], double, int, DenseKernels)}, in the memory of the flat symmetric {@code h}. */
    public static Pivoted minPivotInPlace(double[] h, int n, double percdamp, int maxTries, DenseKernels kernels) {
        double[] diag = diagonal(h, n);
        int[] seq = new int[n];
        Damping d = escalate(mean(diag), percdamp, maxTries, (lambda, attempt) -> {
            if (attempt > 1) {
                restoreLower(h, n, diag);
            }
            addToDiagonal(h, n, lambda);
            return pivotedCholeskyLower(h, n, seq, kernels);
        });
        double traceD = traceOfSquares(h, n);
        reverse(h);
        int[] perm = new int[n];
        for (int i = 0; i < n; i++) {
            perm[i] = seq[n - 1 - i];
        }
        return new Pivoted(perm, new Upper(n, h, d.percdamp(), d.lambda(), d.attempt(), traceD));
    }

    /** The damping that factorised: relative {@code percdamp}, absolute {@code lambda}, 1-based attempt. */
    public record Damping(double percdamp, double lambda, int attempt) {}

    /** One factorisation attempt at damping {@code lambda}: true when every pivot was positive. */
    public interface Attempt {
        boolean factorises(double lambda, int attempt);
    }

    /**
     * λ = pd·mean(diag H), pd ×10 after each failure, at most {@code maxTries} attempts, then
     * {@link NotPositiveDefiniteException}: the escalation of every route (also the GPU's device Cholesky).
     */
    public static Damping escalate(double meanDiag, double percdamp, int maxTries, Attempt attempt) {
        double pd = percdamp;
        for (int t = 1; t <= maxTries; t++) {
            double lambda = pd * meanDiag;
            if (attempt.factorises(lambda, t)) {
                return new Damping(pd, lambda, t);
            }
            pd *= 10;
        }
        throw new NotPositiveDefiniteException("Hessian is not positive definite even with damping "
                + (pd / 10) + " × mean(diag H) (mean diag " + meanDiag + ", " + maxTries
                + " tries from " + percdamp + "): it is not a Gram matrix XᵀX of real inputs");
    }

    private static double mean(double[] v) {
        double s = 0;
        for (double x : v) {
            s += x;
        }
        return s / v.length;
    }

    private static double[] diagonal(double[] a, int n) {
        double[] d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = a[i * n + i];
        }
        return d;
    }

    private static void addToDiagonal(double[] a, int n, double lambda) {
        for (int i = 0; i < n; i++) {
            a[i * n + i] += lambda;
        }
    }

    /** The lower triangle again from the untouched strict upper one and the saved diagonal. */
    private static void restoreLower(double[] a, int n, double[] diag) {
        IntStream.range(0, n).parallel().forEach(i -> {
            int row = i * n;
            for (int j = 0; j < i; j++) {
                a[row + j] = a[j * n + i];
            }
            a[row + i] = diag[i];
        });
    }

    /** Σ_k L_kk², summed in Babai's basis order (before the reversal), as {@link #flat} does: tr(D) agrees bit for bit. */
    private static double traceOfSquares(double[] ut, int n) {
        double s = 0;
        for (int k = 0; k < n; k++) {
            s += ut[k * n + k] * ut[k * n + k];
        }
        return s;
    }

    /**
     * In place, {@code A[a][b] ← A[σ(a)][σ(b)]} for the flat symmetric n×n {@code a}: rows follow the cycles of σ
     * through one spare row, then each row's columns are gathered through a per-task buffer. O(n) extra memory.
     */
    static void permuteSymmetric(double[] a, int n, int[] sigma) {
        boolean identity = true;
        boolean reversal = true;
        for (int i = 0; i < n; i++) {
            identity &= sigma[i] == i;
            reversal &= sigma[i] == n - 1 - i;
        }
        if (identity) {
            return;
        }
        if (reversal) {
            reverse(a); // J·A·J of a flat row-major matrix is the array reversed
            return;
        }
        boolean[] done = new boolean[n];
        double[] spare = new double[n];
        for (int start = 0; start < n; start++) {
            if (done[start] || sigma[start] == start) {
                done[start] = true;
                continue;
            }
            // new row a = old row σ(a): walk the cycle start → σ(start) → … pulling each row into place
            System.arraycopy(a, start * n, spare, 0, n);
            int cur = start;
            while (true) {
                done[cur] = true;
                int src = sigma[cur];
                if (src == start) {
                    System.arraycopy(spare, 0, a, cur * n, n);
                    break;
                }
                System.arraycopy(a, src * n, a, cur * n, n);
                cur = src;
            }
        }
        int chunk = 64;
        IntStream.range(0, (n + chunk - 1) / chunk).parallel().forEach(c -> {
            double[] row = new double[n];
            for (int i = c * chunk; i < Math.min(n, (c + 1) * chunk); i++) {
                int off = i * n;
                for (int j = 0; j < n; j++) {
                    row[j] = a[off + sigma[j]];
                }
                System.arraycopy(row, 0, a, off, n);
            }
        });
    }

    /** Block of the pivoted factorisation: columns chosen one by one inside it, the rest as products. */
    private static final int PIVOT_BLOCK = 64;
    /** Column tile of the pivoted factorisation's trailing update. */
    private static final int TRAILING_TILE = 256;

    /**
     * Pivoted Cholesky that always pivots on the smallest Schur-complement diagonal (ties: the smaller original index),
     * in place on the lower triangle of the flat row-major n×n {@code a} (strict upper triangle neither read nor
     * written). On success the lower triangle holds L with {@code Π·A·Πᵀ = L·Lᵀ} and {@code seq[t]} is the original
     * index pivoted at step t. Left-looking inside blocks of {@link #PIVOT_BLOCK} columns (as LAPACK's dpstrf: each
     * column needs the Schur diagonal after all previous ones), the trailing update as products on the kernels.
     * Returns false when a pivot is not positive or not finite.
     */
    static boolean pivotedCholeskyLower(double[] a, int n, int[] seq, DenseKernels kernels) {
        double[] d = diagonal(a, n);
        for (int i = 0; i < n; i++) {
            seq[i] = i;
        }
        for (int k0 = 0; k0 < n; k0 += PIVOT_BLOCK) {
            int k1 = Math.min(n, k0 + PIVOT_BLOCK);
            for (int j = k0; j < k1; j++) {
                int p = j;
                for (int i = j + 1; i < n; i++) {
                    if (d[i] < d[p] || (d[i] == d[p] && seq[i] < seq[p])) {
                        p = i;
                    }
                }
                double piv = d[p];
                if (!(piv > 0) || !Double.isFinite(piv)) {
                    return false;
                }
                if (p != j) {
                    swapSymmetric(a, n, j, p);
                    double t = d[j];
                    d[j] = d[p];
                    d[p] = t;
                    int s = seq[j];
                    seq[j] = seq[p];
                    seq[p] = s;
                }
                double ljj = Math.sqrt(piv);
                a[j * n + j] = ljj;
                // column j below the diagonal: the block's earlier columns subtracted here (earlier blocks already
                // were, by the trailing updates), then the Schur diagonal updated
                int jRow = j * n;
                int kb = k0;
                int jj = j;
                java.util.function.IntConsumer body = i -> {
                    int row = i * n;
                    double s = a[row + jj];
                    for (int t = kb; t < jj; t++) {
                        s -= a[row + t] * a[jRow + t];
                    }
                    double lij = s / ljj;
                    a[row + jj] = lij;
                    d[i] -= lij * lij;
                };
                int rows = n - j - 1;
                if ((long) rows * (j - k0) > 1 << 16) {
                    int chunk = 256;
                    IntStream.range(0, (rows + chunk - 1) / chunk).parallel().forEach(c -> {
                        int end = Math.min(n, jj + 1 + (c + 1) * chunk);
                        for (int i = jj + 1 + c * chunk; i < end; i++) {
                            body.accept(i);
                        }
                    });
                } else {
                    for (int i = j + 1; i < n; i++) {
                        body.accept(i);
                    }
                }
            }
            trailingUpdate(a, n, k0, k1, kernels);
        }
        return true;
    }

    /**
     * {@code A22 ← A22 − L21·L21ᵀ} on the lower triangle of the rows/columns from {@code k1} on, with
     * {@code L21 = A[k1:, k0:k1]}: per column tile, the diagonal tile through a small buffer (so the strict upper
     * triangle is not written) and the tile's part below it in place.
     */
    private static void trailingUpdate(double[] a, int n, int k0, int k1, DenseKernels kernels) {
        int b = k1 - k0;
        double[] tile = new double[TRAILING_TILE * TRAILING_TILE];
        for (int j0 = k1; j0 < n; j0 += TRAILING_TILE) {
            int j1 = Math.min(n, j0 + TRAILING_TILE);
            int tw = j1 - j0;
            for (int i = 0; i < tw; i++) {
                System.arraycopy(a, (j0 + i) * n + j0, tile, i * tw, i + 1);
            }
            kernels.gemm(false, true, tw, tw, b, -1.0, a, j0 * n + k0, n, a, j0 * n + k0, n, tile, 0, tw);
            for (int i = 0; i < tw; i++) {
                System.arraycopy(tile, i * tw, a, (j0 + i) * n + j0, i + 1);
            }
            if (j1 < n) {
                kernels.gemm(false, true, n - j1, tw, b, -1.0, a, j1 * n + k0, n, a, j0 * n + k0, n,
                        a, j1 * n + j0, n);
            }
        }
    }

    /** Swaps rows and columns j &lt; p of the symmetric matrix held in the lower triangle of {@code a}. */
    private static void swapSymmetric(double[] a, int n, int j, int p) {
        int rj = j * n;
        int rp = p * n;
        for (int t = 0; t < j; t++) {
            double x = a[rj + t];
            a[rj + t] = a[rp + t];
            a[rp + t] = x;
        }
        double x = a[rj + j];
        a[rj + j] = a[rp + p];
        a[rp + p] = x;
        for (int i = j + 1; i < p; i++) {
            x = a[i * n + j];
            a[i * n + j] = a[rp + i];
            a[rp + i] = x;
        }
        for (int i = p + 1; i < n; i++) {
            int ri = i * n;
            x = a[ri + j];
            a[ri + j] = a[ri + p];
            a[ri + p] = x;
        }
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
