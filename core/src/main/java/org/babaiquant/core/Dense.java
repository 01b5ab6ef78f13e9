package org.babaiquant.core;

import java.util.Arrays;
import java.util.stream.IntStream;

/**
 * The pure-Java {@link DenseKernels}, always available, on flat row-major {@code double[]} matrices: a tiled matrix
 * product, a blocked Cholesky factorisation and a blocked lower-triangular inverse. Also the fallback when no native
 * provider loads, and the reference the contract test compares the others against.
 *
 * <p>Everything heavy goes through {@link #product}: {@code C += alpha·A·B}, parallel over chunks of rows of C, tiled
 * over columns so that a {@code K×TILE} panel of B stays in L2 while the chunk streams over it. The inner loop
 * updates two rows of C from four rows of B at a time (eight fused multiply-adds per element pair, with the sixteen
 * operands in registers), contiguous in memory so that HotSpot's C2 vectorises it. The factorisations are
 * right-looking blocked algorithms whose trailing updates are calls to that one kernel.
 */
public final class Dense implements DenseKernels {
    /** The one instance ({@link DenseKernels#pureJava()}). */
    public static final Dense INSTANCE = new Dense();

    /** Column tile: a 128×256 panel of B is 256 KiB, half of this class of machine's L2. */
    static final int TILE = 256;
    /** Rows of C handled by one task. */
    static final int ROW_CHUNK = 16;
    /** Block size of the factorisations. */
    static final int NB = 96;
    /** Products below this many multiply-adds run on the calling thread. */
    private static final long PARALLEL_MIN = 1L << 18;

    private Dense() {}

    /** Which part of a square C block a product updates (indices relative to the block). */
    enum Part { FULL, LOWER, UPPER }

    @Override
    public String name() {
        return "pure-java";
    }

    @Override
    public String description() {
        return "pure-java (float64 loops on parallel streams, " + Runtime.getRuntime().availableProcessors()
                + " cores)";
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, double alpha,
                     double[] a, int aOff, int lda, double[] b, int bOff, int ldb, double[] c, int cOff, int ldc) {
        if (m <= 0 || n <= 0 || k <= 0) {
            return;
        }
        // Transposed operands are packed once (O(mk + kn) against O(mnk) work): the kernel wants rows of A and B.
        if (transA) {
            a = transpose(a, aOff, lda, k, m);
            aOff = 0;
            lda = k;
        }
        if (transB) {
            b = transpose(b, bOff, ldb, n, k);
            bOff = 0;
            ldb = n;
        }
        product(alpha, a, aOff, lda, b, bOff, ldb, c, cOff, ldc, m, n, k, Part.FULL);
    }

    @Override
    public void syrkUpper(int n, int k, double alpha, double[] a, int aOff, int lda, double[] c, int cOff, int ldc) {
        if (n <= 0 || k <= 0) {
            return;
        }
        product(alpha, transpose(a, aOff, lda, k, n), 0, k, a, aOff, lda, c, cOff, ldc, n, n, k, Part.UPPER);
    }

    /** The {@code cols×rows} transpose of the {@code rows×cols} matrix at {@code off}, as a new array. */
    static double[] transpose(double[] a, int off, int ld, int rows, int cols) {
        double[] t = new double[rows * cols];
        for (int i = 0; i < rows; i++) {
            int src = off + i * ld;
            for (int j = 0; j < cols; j++) {
                t[j * rows + i] = a[src + j];
            }
        }
        return t;
    }

    /**
     * {@code C[i][j] += alpha · Σ_p A[i][p] · B[p][j]} for {@code i<m, j<n, p<k}; with {@code part == LOWER} only
     * {@code j ≤ i}, with {@code UPPER} only {@code j ≥ i}. C may share an array with A or B only where the regions
     * do not overlap.
     */
    static void product(double alpha, double[] a, int aOff, int lda, double[] b, int bOff, int ldb,
                        double[] c, int cOff, int ldc, int m, int n, int k, Part part) {
        if (m <= 0 || n <= 0 || k <= 0) {
            return;
        }
        int chunks = (m + ROW_CHUNK - 1) / ROW_CHUNK;
        IntStream range = IntStream.range(0, chunks);
        if ((long) m * n * k > PARALLEL_MIN && chunks > 1) {
            range = range.parallel();
        }
        range.forEach(chunk -> {
            int i0 = chunk * ROW_CHUNK;
            int i1 = Math.min(m, i0 + ROW_CHUNK);
            for (int j0 = 0; j0 < n; j0 += TILE) {
                int j1 = Math.min(n, j0 + TILE);
                int i = i0;
                for (; i + 1 < i1; i += 2) {
                    // the columns both rows update, then each row's own remainder (only for LOWER/UPPER)
                    int lo = Math.max(lo(part, i, j0), lo(part, i + 1, j0));
                    int hi = Math.min(hi(part, i, j1), hi(part, i + 1, j1));
                    if (lo < hi) {
                        pairUpdate(alpha, c, cOff + i * ldc + lo, ldc, a, aOff + i * lda, lda,
                                b, bOff + lo, ldb, hi - lo, k);
                    } else {
                        lo = hi = j0;
                    }
                    for (int r = i; r <= i + 1; r++) {
                        int rlo = lo(part, r, j0);
                        int rhi = hi(part, r, j1);
                        rowUpdate(alpha, c, cOff + r * ldc, a, aOff + r * lda, b, bOff, ldb, rlo, Math.min(rhi, lo), k);
                        rowUpdate(alpha, c, cOff + r * ldc, a, aOff + r * lda, b, bOff, ldb, Math.max(rlo, hi), rhi, k);
                    }
                }
                if (i < i1) {
                    rowUpdate(alpha, c, cOff + i * ldc, a, aOff + i * lda, b, bOff, ldb,
                            lo(part, i, j0), hi(part, i, j1), k);
                }
            }
        });
    }

    private static int lo(Part part, int i, int j0) {
        return part == Part.UPPER ? Math.max(j0, i) : j0;
    }

    private static int hi(Part part, int i, int j1) {
        return part == Part.LOWER ? Math.min(j1, i + 1) : j1;
    }

    /** {@code C[c..c+len) += alpha · Σ_p A[a+p] · B[b + p·ldb + j0 .. j1)} (C and B at column j0), one row. */
    private static void rowUpdate(double alpha, double[] c, int cRow, double[] a, int aRow, double[] b, int bOff,
                                  int ldb, int j0, int j1, int k) {
        int len = j1 - j0;
        if (len <= 0) {
            return;
        }
        int co = cRow + j0;
        int bo = bOff + j0;
        int p = 0;
        for (; p + 3 < k; p += 4) {
            double a0 = alpha * a[aRow + p];
            double a1 = alpha * a[aRow + p + 1];
            double a2 = alpha * a[aRow + p + 2];
            double a3 = alpha * a[aRow + p + 3];
            if (a0 == 0 && a1 == 0 && a2 == 0 && a3 == 0) {
                continue;
            }
            int b0 = bo + p * ldb;
            int b1 = b0 + ldb;
            int b2 = b1 + ldb;
            int b3 = b2 + ldb;
            for (int j = 0; j < len; j++) {
                c[co + j] += a0 * b[b0 + j] + a1 * b[b1 + j] + a2 * b[b2 + j] + a3 * b[b3 + j];
            }
        }
        for (; p < k; p++) {
            double a0 = alpha * a[aRow + p];
            int b0 = bo + p * ldb;
            for (int j = 0; j < len; j++) {
                c[co + j] += a0 * b[b0 + j];
            }
        }
    }

    /**
     * Two rows at once: {@code C[c + r·ldc + j] += alpha · Σ_p A[a + r·lda + p] · B[b + p·ldb + j]}, r ∈ {0, 1},
     * {@code j < len}. Each element of B read serves both rows, which halves the L2 traffic of {@link #rowUpdate}.
     */
    private static void pairUpdate(double alpha, double[] c, int c0, int ldc, double[] a, int a0, int lda,
                                   double[] b, int bo, int ldb, int len, int k) {
        int c1 = c0 + ldc;
        int a1 = a0 + lda;
        int p = 0;
        for (; p + 3 < k; p += 4) {
            double x0 = alpha * a[a0 + p];
            double x1 = alpha * a[a0 + p + 1];
            double x2 = alpha * a[a0 + p + 2];
            double x3 = alpha * a[a0 + p + 3];
            double y0 = alpha * a[a1 + p];
            double y1 = alpha * a[a1 + p + 1];
            double y2 = alpha * a[a1 + p + 2];
            double y3 = alpha * a[a1 + p + 3];
            int b0 = bo + p * ldb;
            int b1 = b0 + ldb;
            int b2 = b1 + ldb;
            int b3 = b2 + ldb;
            for (int j = 0; j < len; j++) {
                double v0 = b[b0 + j];
                double v1 = b[b1 + j];
                double v2 = b[b2 + j];
                double v3 = b[b3 + j];
                c[c0 + j] += x0 * v0 + x1 * v1 + x2 * v2 + x3 * v3;
                c[c1 + j] += y0 * v0 + y1 * v1 + y2 * v2 + y3 * v3;
            }
        }
        for (; p < k; p++) {
            double x0 = alpha * a[a0 + p];
            double y0 = alpha * a[a1 + p];
            int b0 = bo + p * ldb;
            for (int j = 0; j < len; j++) {
                double v0 = b[b0 + j];
                c[c0 + j] += x0 * v0;
                c[c1 + j] += y0 * v0;
            }
        }
    }

    @Override
    public boolean choleskyLower(double[] a, int n) {
        for (int k0 = 0; k0 < n; k0 += NB) {
            int b = Math.min(NB, n - k0);
            // 1. the diagonal block, unblocked (its trailing updates from earlier panels are already applied)
            for (int j = k0; j < k0 + b; j++) {
                int rj = j * n;
                double d = a[rj + j];
                for (int q = k0; q < j; q++) {
                    d -= a[rj + q] * a[rj + q];
                }
                if (!(d > 0) || !Double.isFinite(d)) {
                    return false;
                }
                double ljj = Math.sqrt(d);
                a[rj + j] = ljj;
                for (int i = j + 1; i < k0 + b; i++) {
                    int ri = i * n;
                    double s = a[ri + j];
                    for (int q = k0; q < j; q++) {
                        s -= a[ri + q] * a[rj + q];
                    }
                    a[ri + j] = s / ljj;
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
                int ri = i * n;
                for (int j = k0f; j < k0f + bf; j++) {
                    int rj = j * n;
                    double s = a[ri + j];
                    for (int q = k0f; q < j; q++) {
                        s -= a[ri + q] * a[rj + q];
                    }
                    a[ri + j] = s / a[rj + j];
                }
            });
            // 3. trailing update A22 ← A22 − A21·A21ᵀ (lower triangle only) through the product kernel
            double[] panelT = transpose(a, (k0 + b) * n + k0, n, rest, b);
            int off = (k0 + b) * n + k0 + b;
            product(-1.0, a, (k0 + b) * n + k0, n, panelT, 0, rest, a, off, n, rest, rest, b, Part.LOWER);
        }
        return true;
    }

    /**
     * Blocked by rows: {@code X[I,:I] = −L_II⁻¹ · (L[I,:I] · X[:I,:I])}; because X is lower triangular, column tile
     * {@code [j0,j1)} of the product only needs rows {@code p ≥ j0} of X.
     */
    @Override
    public void invertLower(double[] l, int n) {
        for (int i = 0; i < n; i++) {
            Arrays.fill(l, i * n + i + 1, (i + 1) * n, 0.0);
        }
        for (int i0 = 0; i0 < n; i0 += NB) {
            int b = Math.min(NB, n - i0);
            double[] diag = new double[b * b];
            for (int r = 0; r < b; r++) {
                System.arraycopy(l, (i0 + r) * n + i0, diag, r * b, r + 1);
            }
            if (i0 > 0) {
                // T = −L[I,:I] · X[:I,:I]
                double[] t = new double[b * i0];
                for (int j0 = 0; j0 < i0; j0 += TILE) {
                    int jn = Math.min(TILE, i0 - j0);
                    product(-1.0, l, i0 * n + j0, n, l, j0 * n + j0, n, t, j0, i0, b, jn, i0 - j0, Part.FULL);
                }
                // X[I,:I] = L_II⁻¹ · T (forward substitution on whole rows)
                for (int r = 0; r < b; r++) {
                    int tr = r * i0;
                    for (int q = 0; q < r; q++) {
                        double f = diag[r * b + q];
                        int xq = (i0 + q) * n;
                        for (int j = 0; j < i0; j++) {
                            t[tr + j] -= f * l[xq + j];
                        }
                    }
                    double inv = 1.0 / diag[r * b + r];
                    int xr = (i0 + r) * n;
                    for (int j = 0; j < i0; j++) {
                        l[xr + j] = t[tr + j] * inv;
                    }
                }
            }
            // X_II = L_II⁻¹, unblocked
            for (int r = 0; r < b; r++) {
                int xr = (i0 + r) * n + i0;
                for (int c = 0; c <= r; c++) {
                    double s = (r == c) ? 1.0 : 0.0;
                    for (int q = c; q < r; q++) {
                        s -= diag[r * b + q] * l[(i0 + q) * n + i0 + c];
                    }
                    l[xr + c] = s / diag[r * b + r];
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

    /** The rows of {@code a} (all of equal length) as one row-major array. */
    public static double[] flatten(double[][] a) {
        int rows = a.length;
        int cols = rows == 0 ? 0 : a[0].length;
        double[] f = new double[checkedSize(rows, cols)];
        for (int i = 0; i < rows; i++) {
            System.arraycopy(a[i], 0, f, i * cols, cols);
        }
        return f;
    }

    /** The row-major {@code rows×cols} array {@code f} as one array per row. */
    public static double[][] unflatten(double[] f, int rows, int cols) {
        double[][] a = new double[rows][];
        for (int i = 0; i < rows; i++) {
            a[i] = Arrays.copyOfRange(f, i * cols, (i + 1) * cols);
        }
        return a;
    }

    /** {@code rows·cols} as an array length, or a clear error when one Java array cannot hold it. */
    static int checkedSize(long rows, long cols) {
        long size = rows * cols;
        if (size > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("a " + rows + "x" + cols + " float64 matrix (" + size
                    + " elements) does not fit one Java array");
        }
        return (int) size;
    }
}
