package org.babaiquant.core;

/**
 * Babai's nearest-plane algorithm stated directly on a lattice basis: the independent statement of what GPTQ
 * computes, used as the oracle in tests and available as {@code --method babai}.
 *
 * <p>For one output row with grid scales s and zeros z, the lattice is spanned by the columns of
 * {@code B = X′·diag(s)} (X′ = [X; √λ·I], columns in basis order {@code b}), and the target is {@code B·u} with
 * {@code u_k = w_{b(k)}/s_k + z_k}. With {@code X′ = Q·R} (R upper, positive diagonal), Babai fixes the last basis
 * vector first:
 * <pre>
 *   for k = n−1 … 0:   c_k = rint( u_k + Σ_{j>k} R_kj s_j (u_j − c_j) / (R_kk s_k) )
 * </pre>
 * and {@code ‖B(u−c)‖² = Σ_k (R_kk s_k (t_k − c_k))²} where t_k is the number rounded at step k; each term is at most
 * {@code ¼ R_kk² s_k²}, which is Babai's bound. GPTQ in processing order P equals this on basis order reverse(P).
 */
public final class BabaiNearestPlane {
    /** R [n][n], upper triangle, positive diagonal; rows/columns in basis order. */
    private final double[][] r;
    /** basis position k holds original column {@code basis[k]}. */
    private final int[] basis;

    private BabaiNearestPlane(double[][] r, int[] basis) {
        this.r = r;
        this.basis = basis;
    }

    /** One row's result. */
    public record Row(int[] codes, double loss, double bound, int clipped) {}

    /**
     * From the basis itself: Householder QR of {@code [X; √λ·I]} with columns in the basis order {@code reverse(perm)}.
     * O(tokens·n²): the test oracle, independent of the Cholesky route GPTQ takes.
     */
    public static BabaiNearestPlane fromBasis(double[][] x, double lambda, int[] perm) {
        int n = perm.length;
        int t = x.length;
        int m = t + n;
        int[] basis = reversed(perm);
        // column-major copy of X′ in basis order
        double[][] a = new double[n][m];
        for (int k = 0; k < n; k++) {
            int col = basis[k];
            for (int i = 0; i < t; i++) {
                a[k][i] = x[i][col];
            }
            a[k][t + col] = Math.sqrt(lambda);
        }
        for (int k = 0; k < n; k++) {
            double[] v = a[k];
            double norm = 0;
            for (int i = k; i < m; i++) {
                norm += v[i] * v[i];
            }
            norm = Math.sqrt(norm);
            if (norm == 0) {
                throw new ArithmeticException("basis is rank deficient at column " + k);
            }
            double alpha = v[k] > 0 ? -norm : norm;
            // Householder vector h = v[k:] − alpha·e_k, applied to the remaining columns
            double vk = v[k] - alpha;
            double hh = vk * vk;
            for (int i = k + 1; i < m; i++) {
                hh += v[i] * v[i];
            }
            for (int j = k + 1; j < n; j++) {
                double[] c = a[j];
                double dot = vk * c[k];
                for (int i = k + 1; i < m; i++) {
                    dot += v[i] * c[i];
                }
                double f = 2 * dot / hh;
                c[k] -= f * vk;
                for (int i = k + 1; i < m; i++) {
                    c[i] -= f * v[i];
                }
            }
            v[k] = alpha;
        }
        // R[k][j] = a[j][k] for j ≥ k; flip row signs so that the diagonal is positive
        double[][] r = new double[n][n];
        for (int k = 0; k < n; k++) {
            double sign = Math.signum(a[k][k]);
            for (int j = k; j < n; j++) {
                r[k][j] = sign * a[j][k];
            }
        }
        return new BabaiNearestPlane(r, basis);
    }

    /** From the lower Cholesky factor L of the damped H in basis order reverse(perm): R = Lᵀ. */
    public static BabaiNearestPlane fromCholesky(double[][] l, int[] perm) {
        int n = perm.length;
        double[][] r = new double[n][n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j <= i; j++) {
                r[j][i] = l[i][j];
            }
        }
        return new BabaiNearestPlane(r, reversed(perm));
    }

    /** tr(D) = Σ R_kk². */
    public double traceD() {
        double s = 0;
        for (int k = 0; k < r.length; k++) {
            s += r[k][k] * r[k][k];
        }
        return s;
    }

    /** Nearest plane for row {@code row} of W ({@code w} in original column order); codes in original order. */
    public Row solveRow(double[] w, QuantGrid grid, int row, boolean clip) {
        int n = basis.length;
        double[] s = new double[n];
        double[] u = new double[n];
        for (int k = 0; k < n; k++) {
            int col = basis[k];
            s[k] = grid.scale(row, col);
            u[k] = w[col] / s[k] + grid.zero(row, col);
        }
        double[] residual = new double[n]; // s_j (u_j − c_j)
        int[] codes = new int[n];
        double loss = 0;
        double bound = 0;
        int clipped = 0;
        for (int k = n - 1; k >= 0; k--) {
            double[] rk = r[k];
            double acc = 0;
            for (int j = k + 1; j < n; j++) {
                acc += rk[j] * residual[j];
            }
            double target = u[k] + acc / (rk[k] * s[k]);
            double c = Math.rint(target);
            if (clip && (c < 0 || c > grid.maxq)) {
                c = Math.min(Math.max(c, 0), grid.maxq);
                clipped++;
            }
            residual[k] = s[k] * (u[k] - c);
            double step = rk[k] * s[k] * (target - c);
            loss += step * step;
            bound += 0.25 * rk[k] * rk[k] * s[k] * s[k];
            codes[basis[k]] = (int) c;
        }
        return new Row(codes, loss, bound, clipped);
    }

    private static int[] reversed(int[] perm) {
        int n = perm.length;
        int[] b = new int[n];
        for (int k = 0; k < n; k++) {
            b[k] = perm[n - 1 - k];
        }
        return b;
    }
}
