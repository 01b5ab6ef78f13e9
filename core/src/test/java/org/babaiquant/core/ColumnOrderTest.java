package org.babaiquant.core;

import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ColumnOrderTest {
    @Test
    void ordersAreThePermutationsTheyClaim() {
        double[][] h = {{2, 0, 0}, {0, 5, 0}, {0, 0, 1}};
        assertArrayEquals(new int[] {0, 1, 2}, ColumnOrder.NATURAL.permutation(h, 0));
        assertArrayEquals(new int[] {2, 1, 0}, ColumnOrder.REVERSE.permutation(h, 0));
        assertArrayEquals(new int[] {1, 0, 2}, ColumnOrder.ACT_ORDER.permutation(h, 0));
        // diagonal H: Schur complements are the diagonal, pivots ascending, GPTQ order = reverse = descending
        assertArrayEquals(new int[] {1, 0, 2}, ColumnOrder.MIN_PIVOT.permutation(h, 0));
    }

    @Test
    void minPivotPicksTheSmallestSchurComplementEachStep() {
        // after pivoting on column 0 (diag 1), column 2's Schur complement 4 − 1.9² = 0.39 < column 1's 3
        double[][] h = {{1, 0, 1.9}, {0, 3, 0}, {1.9, 0, 4}};
        assertArrayEquals(new int[] {0, 2, 1}, ColumnOrder.minPivotSequence(h, 0));
        assertArrayEquals(new int[] {1, 2, 0}, ColumnOrder.MIN_PIVOT.permutation(h, 0));
    }

    @Test
    void minPivotTraceDIsNoLargerThanActOrderOnRandomHessians() {
        Random rnd = new Random(21);
        for (int trial = 0; trial < 5; trial++) {
            double[][] h = Fixtures.gram(Fixtures.activations(rnd, 120, 60));
            double mp = DampedFactor.of(h, ColumnOrder.MIN_PIVOT.permutation(h, 0.01 * meanDiag(h)), 0.01, 1).traceD;
            double act = DampedFactor.of(h, ColumnOrder.ACT_ORDER.permutation(h, 0), 0.01, 1).traceD;
            assertTrue(mp <= act * (1 + 1e-12), "trial " + trial + ": min-pivot " + mp + " > act-order " + act);
            int[] p = ColumnOrder.MIN_PIVOT.permutation(h, 0);
            int[] sorted = p.clone();
            Arrays.sort(sorted);
            for (int j = 0; j < 60; j++) {
                assertEquals(j, sorted[j]);
            }
        }
    }

    @Test
    void dampedFactorIsTheUpperCholeskyFactorOfTheInverse() {
        Random rnd = new Random(8);
        int n = 110;
        double[][] h = Fixtures.gram(Fixtures.activations(rnd, 300, n));
        int[] perm = ColumnOrder.ACT_ORDER.permutation(h, 0);
        DampedFactor f = DampedFactor.of(h, perm, 0.01, 1);
        // Uᵀ·U·(H_P + λI) = I
        for (int i = 0; i < n; i += 7) {
            for (int j = 0; j < n; j += 5) {
                double s = 0;
                for (int k = 0; k < n; k++) {
                    double hinv = 0;
                    for (int m = 0; m <= Math.min(i, k); m++) {
                        hinv += f.u[m][i] * f.u[m][k];
                    }
                    s += hinv * (h[perm[k]][perm[j]] + (k == j ? f.lambda : 0));
                }
                assertEquals(i == j ? 1 : 0, s, 1e-8, i + "," + j);
            }
        }
        double trace = 0;
        for (int k = 0; k < n; k++) {
            assertEquals(0.0, k > 0 ? f.u[k][k - 1] : 0.0, 0);
            trace += 1 / (f.u[k][k] * f.u[k][k]);
        }
        assertEquals(trace, f.traceD, 1e-9 * trace);
    }

    private static double meanDiag(double[][] h) {
        double s = 0;
        for (int j = 0; j < h.length; j++) {
            s += h[j][j];
        }
        return s / h.length;
    }
}
