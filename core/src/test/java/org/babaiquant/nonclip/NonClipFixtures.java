package org.babaiquant.nonclip;

import org.babaiquant.core.TestInputs;

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
        return TestInputs.hessian(rnd, tokens, n);
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
