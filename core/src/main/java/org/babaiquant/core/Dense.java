package org.babaiquant.core;

import java.util.stream.IntStream;

/**
 * Dense float64 kernels on row-major {@code double[][]} matrices (one array per row), the few that the lattice
 * algorithms need: a tiled matrix product, a blocked Cholesky factorisation and a blocked lower-triangular inverse.
 *
 * <p>Everything heavy goes through {@link #gemm}: {@code C += alpha·A·B}, parallel over rows of C, tiled over
 * columns so that a {@code K×TILE} panel of B stays in L2 while every row of the chunk streams over it, with the
 * inner loop written as four fused axpys over contiguous memory that HotSpot's C2 vectorises. The factorisations are
 * right-looking blocked algorithms whose trailing updates are calls to that one kernel.
 */
public final class Dense {
    /** Column tile: a 128×256 panel of B is 256 KiB, a quarter of this class of machine's L2. */
    static final int TILE = 256;
    /** Rows of C handled by one task. */
    static final int ROW_CHUNK = 16;
    /** Block size of the factorisations. */
    static final int NB = 96;

    private Dense() {}

    /** Which part of a square C block a product updates (relative indices inside the block). */
    public enum Part { FULL, LOWER, UPPER }

    /**
     * {@code C[cr+i][cc+j] += alpha · Σ_p A[ar+i][ac+p] · B[br+p][bc+j]} for {@code i<m, j<n, p<k}; with
     * {@code part == LOWER} only {@code j ≤ i}, with {@code UPPER} only {@code j ≥ i}.
     * A row of C may be the same array as a row of A or B only where the column ranges do not overlap.
     */
    public static void gemm(double alpha, double[][] c, int cr, int cc, double[][] a, int ar, int ac,
                            double[][] b, int br, int bc, int m, int n, int k, Part part) {
        if (m <= 0 || n <= 0 || k <= 0) {
            return;
        }
        int chunks = (m + ROW_CHUNK - 1) / ROW_CHUNK;
        IntStream range = IntStream.range(0, chunks);
        if ((long) m * n * k > 1L << 18 && chunks > 1) {
            range = range.parallel();
        }
        range.forEach(chunk -> {
            int i0 = chunk * ROW_CHUNK;
            int i1 = Math.min(m, i0 + ROW_CHUNK);
            for (int j0 = 0; j0 < n; j0 += TILE) {
                int j1 = Math.min(n, j0 + TILE);
                for (int i = i0; i < i1; i++) {
                    int lo = j0;
                    int hi = j1;
                    if (part == Part.LOWER) {
                        hi = Math.min(hi, i + 1);
                    } else if (part == Part.UPPER) {
                        lo = Math.max(lo, i);
                    }
                    if (lo < hi) {
                        rowUpdate(alpha, c[cr + i], cc + lo, a[ar + i], ac, b, br, bc + lo, hi - lo, k);
                    }
                }
            }
        });
    }

    /** {@code cRow[co..co+len) += alpha · Σ_p aRow[ao+p] · B[br+p][bo..bo+len)}, four rows of B at a time. */
    private static void rowUpdate(double alpha, double[] cRow, int co, double[] aRow, int ao,
                                  double[][] b, int br, int bo, int len, int k) {
        int p = 0;
        for (; p + 3 < k; p += 4) {
            double a0 = alpha * aRow[ao + p];
            double a1 = alpha * aRow[ao + p + 1];
            double a2 = alpha * aRow[ao + p + 2];
            double a3 = alpha * aRow[ao + p + 3];
            if (a0 == 0 && a1 == 0 && a2 == 0 && a3 == 0) {
                continue;
            }
            double[] b0 = b[br + p];
            double[] b1 = b[br + p + 1];
            double[] b2 = b[br + p + 2];
            double[] b3 = b[br + p + 3];
            for (int j = 0; j < len; j++) {
                cRow[co + j] += a0 * b0[bo + j] + a1 * b1[bo + j] + a2 * b2[bo + j] + a3 * b3[bo + j];
            }
        }
        for (; p < k; p++) {
            double a0 = alpha * aRow[ao + p];
            double[] b0 = b[br + p];
            for (int j = 0; j < len; j++) {
                cRow[co + j] += a0 * b0[bo + j];
            }
        }
    }

    /**
     * In-place lower Cholesky factor {@code A = L·Lᵀ} of the symmetric matrix whose lower triangle is in {@code a}
     * (the strict upper triangle is neither read nor written). Numerical failure is a return value, as in EJML:
     * {@code false} when a pivot is not positive (or not finite), in which case {@code a} holds garbage.
     */
    public static boolean choleskyLower(double[][] a) {
        int n = a.length;
        for (int k0 = 0; k0 < n; k0 += NB) {
            int b = Math.min(NB, n - k0);
            // 1. the diagonal block, unblocked (its trailing updates from earlier panels are already applied)
            for (int j = k0; j < k0 + b; j++) {
                double[] rj = a[j];
                double d = rj[j];
                for (int q = k0; q < j; q++) {
                    d -= rj[q] * rj[q];
                }
                if (!(d > 0) || !Double.isFinite(d)) {
                    return false;
                }
                double ljj = Math.sqrt(d);
                rj[j] = ljj;
                for (int i = j + 1; i < k0 + b; i++) {
                    double[] ri = a[i];
                    double s = ri[j];
                    for (int q = k0; q < j; q++) {
                        s -= ri[q] * rj[q];
                    }
                    ri[j] = s / ljj;
                }
            }
            int rest = n - k0 - b;
            if (rest == 0) {
                break;
            }
            // 2. the panel below it: A21 ← A21 · L11⁻ᵀ (forward substitution, row by row)
            int k0f = k0;
            int bf = b;
            IntStream.range(k0 + b, n).parallel().forEach(i -> {
                double[] ri = a[i];
                for (int j = k0f; j < k0f + bf; j++) {
                    double[] rj = a[j];
                    double s = ri[j];
                    for (int q = k0f; q < j; q++) {
                        s -= ri[q] * rj[q];
                    }
                    ri[j] = s / rj[j];
                }
            });
            // 3. trailing update A22 ← A22 − A21·A21ᵀ (lower triangle only) through the product kernel
            double[][] panelT = new double[b][rest];
            for (int i = 0; i < rest; i++) {
                double[] ri = a[k0 + b + i];
                for (int q = 0; q < b; q++) {
                    panelT[q][i] = ri[k0 + q];
                }
            }
            gemm(-1.0, a, k0 + b, k0 + b, a, k0 + b, k0, panelT, 0, 0, rest, rest, b, Part.LOWER);
        }
        return true;
    }

    /**
     * In-place inverse of a lower-triangular matrix with positive diagonal (the lower triangle is read; the strict
     * upper triangle is set to zero, since the blocked products below read whole tiles). Blocked by rows: {@code X[I,:I] = −L_II⁻¹ · (L[I,:I] · X[:I,:I])}; because X is lower triangular,
     * column tile {@code [j0,j1)} of the product only needs rows {@code p ≥ j0} of X.
     */
    public static void invertLower(double[][] l) {
        int n = l.length;
        for (int i = 0; i < n; i++) {
            java.util.Arrays.fill(l[i], i + 1, n, 0.0);
        }
        for (int i0 = 0; i0 < n; i0 += NB) {
            int b = Math.min(NB, n - i0);
            double[][] diag = new double[b][b];
            for (int r = 0; r < b; r++) {
                System.arraycopy(l[i0 + r], i0, diag[r], 0, r + 1);
            }
            if (i0 > 0) {
                // T = −L[I,:I] · X[:I,:I]
                double[][] t = new double[b][i0];
                for (int j0 = 0; j0 < i0; j0 += TILE) {
                    int jn = Math.min(TILE, i0 - j0);
                    gemm(-1.0, t, 0, j0, l, i0, j0, l, j0, j0, b, jn, i0 - j0, Part.FULL);
                }
                // X[I,:I] = L_II⁻¹ · T (forward substitution on whole rows)
                for (int r = 0; r < b; r++) {
                    double[] tr = t[r];
                    for (int q = 0; q < r; q++) {
                        double f = diag[r][q];
                        double[] xq = l[i0 + q];
                        for (int j = 0; j < i0; j++) {
                            tr[j] -= f * xq[j];
                        }
                    }
                    double inv = 1.0 / diag[r][r];
                    double[] xr = l[i0 + r];
                    for (int j = 0; j < i0; j++) {
                        xr[j] = tr[j] * inv;
                    }
                }
            }
            // X_II = L_II⁻¹, unblocked
            for (int r = 0; r < b; r++) {
                double[] xr = l[i0 + r];
                for (int c = 0; c <= r; c++) {
                    double s = (r == c) ? 1.0 : 0.0;
                    for (int q = c; q < r; q++) {
                        s -= diag[r][q] * l[i0 + q][i0 + c];
                    }
                    xr[i0 + c] = s / diag[r][r];
                }
            }
        }
    }

    /** A deep copy. */
    public static double[][] copy(double[][] a) {
        double[][] c = new double[a.length][];
        for (int i = 0; i < a.length; i++) {
            c[i] = a[i].clone();
        }
        return c;
    }
}
