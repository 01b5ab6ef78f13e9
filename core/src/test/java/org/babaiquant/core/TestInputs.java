package org.babaiquant.core;

import java.util.Random;

/**
 * Seeded calibration-like inputs shared by the tests of every module (core publishes its test classes as a test-jar):
 * correlated columns with uneven scales, as real activations have.
 */
public final class TestInputs {
    private TestInputs() {}

    /** X [tokens, n]: per-column log-normal scales, and a common factor shared by all columns of a token. */
    public static double[][] activations(Random rnd, int tokens, int n) {
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
        return x;
    }

    /** H = XᵀX of {@link #activations}. */
    public static double[][] hessian(Random rnd, int tokens, int n) {
        return new HessianAccumulator(n).add(activations(rnd, tokens, n)).hessian();
    }
}
