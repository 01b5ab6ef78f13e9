package org.babaiquant.core;

import org.babaiquant.BadInputException;

/** Input checks shared by every method: shapes, finiteness, and that H looks like a Gram matrix. */
public final class Validation {
    private Validation() {}

    /** A non-empty rectangular matrix of finite numbers. */
    public static void weights(double[][] m, String name) {
        if (m == null || m.length == 0 || m[0] == null || m[0].length == 0) {
            throw new BadInputException(name + " is empty");
        }
        int cols = m[0].length;
        for (int r = 0; r < m.length; r++) {
            if (m[r].length != cols) {
                throw new BadInputException(name + " is ragged: row " + r + " has " + m[r].length + " columns, row 0 has " + cols);
            }
            for (int j = 0; j < cols; j++) {
                if (!Double.isFinite(m[r][j])) {
                    throw new BadInputException(name + " has a non-finite value " + m[r][j] + " at [" + r + ", " + j + "]");
                }
            }
        }
    }

    /**
     * H must be [n][n] for W with n input columns, finite, symmetric (to 1e-6 of its largest diagonal entry, since
     * float32 inputs summed in different orders differ in the last bits) and with a non-negative diagonal.
     */
    public static void hessian(double[][] h, int n) {
        weights(h, "H");
        if (h.length != h[0].length) {
            throw new BadInputException("H must be square, got " + h.length + "x" + h[0].length);
        }
        if (h.length != n) {
            throw new BadInputException("H is " + h.length + "x" + h.length + " but W has " + n
                    + " input columns (W must be [out, in], H = XᵀX is [in, in])");
        }
        double maxDiag = 0;
        for (int j = 0; j < n; j++) {
            if (h[j][j] < 0) {
                throw new NotPositiveDefiniteException("H[" + j + "][" + j + "] = " + h[j][j]
                        + " < 0: not a Gram matrix XᵀX");
            }
            maxDiag = Math.max(maxDiag, h[j][j]);
        }
        double tol = 1e-6 * maxDiag;
        // compared in 64×64 tiles: reading H[j][i] down a column for every row thrashes the cache (seconds at n = 11008)
        for (int i0 = 0; i0 < n; i0 += 64) {
            for (int j0 = 0; j0 <= i0; j0 += 64) {
                for (int i = i0; i < Math.min(n, i0 + 64); i++) {
                    for (int j = j0; j < Math.min(i, j0 + 64); j++) {
                        if (Math.abs(h[i][j] - h[j][i]) > tol) {
                            throw new BadInputException("H is not symmetric: H[" + i + "][" + j + "] = " + h[i][j]
                                    + " but H[" + j + "][" + i + "] = " + h[j][i]);
                        }
                    }
                }
            }
        }
    }

    /** As {@link #hessian(double[][], int)} for H flat row-major ({@code n·n} values). */
    public static void hessian(double[] h, int n) {
        if (h == null || (long) n * n != h.length) {
            throw new BadInputException("H has " + (h == null ? 0 : h.length) + " values but W has " + n
                    + " input columns (H = XᵀX must be [in, in])");
        }
        double maxDiag = 0;
        for (int j = 0; j < n; j++) {
            double d = h[j * n + j];
            if (d < 0) {
                throw new NotPositiveDefiniteException("H[" + j + "][" + j + "] = " + d + " < 0: not a Gram matrix XᵀX");
            }
            maxDiag = Math.max(maxDiag, d);
        }
        double tol = 1e-6 * maxDiag;
        for (int i0 = 0; i0 < n; i0 += 64) {
            for (int j0 = 0; j0 <= i0; j0 += 64) {
                for (int i = i0; i < Math.min(n, i0 + 64); i++) {
                    for (int j = j0; j < Math.min(i + 1, j0 + 64); j++) {
                        double a = h[i * n + j];
                        double b = h[j * n + i];
                        if (!Double.isFinite(a) || !Double.isFinite(b)) {
                            throw new BadInputException("H has a non-finite value at [" + i + ", " + j + "]");
                        }
                        if (Math.abs(a - b) > tol) {
                            throw new BadInputException("H is not symmetric: H[" + i + "][" + j + "] = " + a
                                    + " but H[" + j + "][" + i + "] = " + b);
                        }
                    }
                }
            }
        }
    }
}
