package org.babaiquant.blas;

import dev.ludovic.netlib.blas.BLAS;
import dev.ludovic.netlib.lapack.LAPACK;
import org.babaiquant.core.DenseKernels;
import org.netlib.util.intW;

import java.util.Arrays;

/**
 * {@link DenseKernels} on native BLAS/LAPACK through netlib (dev.ludovic.netlib, the binding Spark MLlib uses), in
 * float64 like the pure-Java kernels. Created only by {@link NetlibKernelsProvider} once native BLAS has loaded.
 *
 * <p>Our matrices are row-major; BLAS is column-major. A row-major {@code r×c} array with leading dimension ld is,
 * read column-major, its transpose {@code c×r} with the same ld, so no data moves:
 * <ul>
 *   <li>{@code C += α·op(A)·op(B)} is {@code Cᵀ += α·op(B)ᵀ·op(A)ᵀ}: dgemm with the operands swapped;</li>
 *   <li>the upper triangle of {@code C += α·AᵀA} (A is samples × features) is the lower triangle of the column-major
 *       {@code Aᵀ·(Aᵀ)ᵀ}: dsyrk("L", "N");</li>
 *   <li>a row-major lower triangle is a column-major upper one: dpotrf("U") gives {@code A = UᵀU} with
 *       {@code Uᵀ = L}, and dtrtri("U") inverts it in place.</li>
 * </ul>
 * Without native LAPACK (netlib fell back to its Java LAPACK) the two factorisations run on the pure-Java kernels.
 */
final class NetlibKernels implements DenseKernels {
    private final BLAS blas;
    /** Null when LAPACK is not native: the factorisations then use {@link DenseKernels#pureJava()}. */
    private final LAPACK lapack;
    private final String description;

    NetlibKernels(BLAS blas, LAPACK lapack, String description) {
        this.blas = blas;
        this.lapack = lapack;
        this.description = description;
    }

    @Override
    public String name() {
        return NetlibKernelsProvider.NAME;
    }

    @Override
    public String description() {
        return description;
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, double alpha,
                     double[] a, int aOff, int lda, double[] b, int bOff, int ldb, double[] c, int cOff, int ldc) {
        if (m <= 0 || n <= 0 || k <= 0) {
            return;
        }
        blas.dgemm(transB ? "T" : "N", transA ? "T" : "N", n, m, k, alpha, b, bOff, ldb, a, aOff, lda,
                1.0, c, cOff, ldc);
    }

    @Override
    public void syrkUpper(int n, int k, double alpha, double[] a, int aOff, int lda, double[] c, int cOff, int ldc) {
        if (n <= 0 || k <= 0) {
            return;
        }
        // netlib 3.2.0 bounds-checks dsyrk's operands up to offset + columns·ld, i.e. its last column at full ld where
        // BLAS reads only n rows of it; a view that ends before that runs on tight copies (the accumulator's own calls
        // never need them)
        if (aOff + (long) k * lda > a.length) {
            double[] tight = new double[k * n];
            for (int p = 0; p < k; p++) {
                System.arraycopy(a, aOff + p * lda, tight, p * n, n);
            }
            a = tight;
            aOff = 0;
            lda = n;
        }
        if (cOff + (long) n * ldc > c.length) {
            double[] tight = new double[n * n];
            for (int i = 0; i < n; i++) {
                System.arraycopy(c, cOff + i * ldc + i, tight, i * n + i, n - i);
            }
            blas.dsyrk("L", "N", n, k, alpha, a, aOff, lda, 1.0, tight, 0, n);
            for (int i = 0; i < n; i++) {
                System.arraycopy(tight, i * n + i, c, cOff + i * ldc + i, n - i);
            }
            return;
        }
        blas.dsyrk("L", "N", n, k, alpha, a, aOff, lda, 1.0, c, cOff, ldc);
    }

    @Override
    public boolean choleskyLower(double[] a, int n) {
        if (lapack == null) {
            return DenseKernels.pureJava().choleskyLower(a, n);
        }
        if (n == 0) {
            return true;
        }
        intW info = new intW(0);
        lapack.dpotrf("U", n, a, 0, n, info);
        if (info.val != 0) {
            return false;
        }
        // OpenBLAS's potrf tests a pivot with "≤ 0", which NaN passes: a NaN anywhere in the lower triangle reaches
        // the diagonal of its row, so checking the diagonal makes "not finite" a failure as in the pure-Java kernel.
        for (int i = 0; i < n; i++) {
            double d = a[i * n + i];
            if (!(d > 0) || !Double.isFinite(d)) {
                return false;
            }
        }
        return true;
    }

    @Override
    public void invertLower(double[] l, int n) {
        if (lapack == null) {
            DenseKernels.pureJava().invertLower(l, n);
            return;
        }
        if (n == 0) {
            return;
        }
        intW info = new intW(0);
        lapack.dtrtri("U", "N", n, l, 0, n, info);
        if (info.val < 0) {
            throw new IllegalArgumentException("dtrtri rejected argument " + (-info.val) + " (n=" + n + ")");
        }
        for (int i = 0; i < n; i++) {
            Arrays.fill(l, i * n + i + 1, (i + 1) * n, 0.0);
        }
    }
}
