package org.babaiquant.core;

import java.util.Random;

/** Seeded random inputs for the identity tests. */
final class Fixtures {
    private Fixtures() {}

    /** A fresh seed per run, printed in every assertion message that uses it, so a failure can be replayed. */
    static long freshSeed() {
        return System.nanoTime() ^ 0x5DEECE66DL;
    }

    static double[][] gaussian(Random rnd, int rows, int cols, double sd) {
        double[][] m = new double[rows][cols];
        for (double[] row : m) {
            for (int j = 0; j < cols; j++) {
                row[j] = sd * rnd.nextGaussian();
            }
        }
        return m;
    }

    /** Calibration-like inputs: correlated columns with uneven scales (so orders and H matter). */
    static double[][] activations(Random rnd, int tokens, int n) {
        double[][] base = gaussian(rnd, tokens, n, 1);
        double[] colScale = new double[n];
        for (int j = 0; j < n; j++) {
            colScale[j] = Math.exp(rnd.nextGaussian() * 0.7);
        }
        for (double[] row : base) {
            double common = rnd.nextGaussian();
            for (int j = 0; j < n; j++) {
                row[j] = colScale[j] * (row[j] + 0.5 * common);
            }
        }
        return base;
    }

    static double[][] gram(double[][] x) {
        return new HessianAccumulator(x[0].length).add(x).hessian();
    }

    /** (q−w)ᵀ(H + λI)(q−w) computed directly, row by row. */
    static double dampedError(double[] w, double[] q, double[][] h, double lambda) {
        int n = w.length;
        double s = 0;
        for (int i = 0; i < n; i++) {
            double di = q[i] - w[i];
            double hi = lambda * di;
            for (int j = 0; j < n; j++) {
                hi += h[i][j] * (q[j] - w[j]);
            }
            s += di * hi;
        }
        return s;
    }
}
