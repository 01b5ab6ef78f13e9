package org.babaiquant.nonclip;

import org.babaiquant.core.HessianAccumulator;

import java.util.Random;

/** Seeded layers for the no-clipping tests: heavy-ish tailed weights and correlated, unevenly scaled inputs. */
final class NonClipFixtures {
    private NonClipFixtures() {}

    /** Gaussian weights with 1 in 50 drawn 4× wider: real weight rows have such tails, and they make outliers. */
    static double[][] weights(Random rnd, int rows, int cols) {
        double[][] w = new double[rows][cols];
        for (double[] row : w) {
            for (int j = 0; j < cols; j++) {
                row[j] = 0.02 * rnd.nextGaussian() * (rnd.nextInt(50) == 0 ? 4 : 1);
            }
        }
        return w;
    }

    static double[][] hessian(Random rnd, int tokens, int n) {
        double[] colScale = new double[n];
        for (int j = 0; j < n; j++) {
            colScale[j] = Math.exp(rnd.nextGaussian() * 0.7);
        }
        double[][] x = new double[tokens][n];
        for (double[] row : x) {
            double common = rnd.nextGaussian();
            for (int j = 0; j < n; j++) {
                row[j] = colScale[j] * (rnd.nextGaussian() + 0.5 * common);
            }
        }
        return new HessianAccumulator(n).add(x).hessian();
    }

    static float[] toFloat(double[][] m) {
        int cols = m[0].length;
        float[] f = new float[m.length * cols];
        for (int r = 0; r < m.length; r++) {
            for (int j = 0; j < cols; j++) {
                f[r * cols + j] = (float) m[r][j];
            }
        }
        return f;
    }
}
