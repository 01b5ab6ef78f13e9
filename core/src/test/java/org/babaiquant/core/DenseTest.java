package org.babaiquant.core;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The pure-Java kernels on flat row-major arrays ({@code DenseKernelsContractTest} runs these checks on every provider). */
class DenseTest {
    private static final double TOL = 1e-10;
    private static final Dense K = Dense.INSTANCE;

    @Test
    void choleskyOfHandCheckableMatrixHasSmallIntegerFactor() {
        // A = L·Lᵀ with L = [[2,0,0],[1,3,0],[2,1,4]]
        double[] a = {4, 2, 4, 2, 10, 5, 4, 5, 21};
        assertTrue(K.choleskyLower(a, 3));
        assertArrayEquals(new double[] {2}, new double[] {a[0]}, 0);
        assertArrayEquals(new double[] {1, 3}, new double[] {a[3], a[4]}, 0);
        assertArrayEquals(new double[] {2, 1, 4}, new double[] {a[6], a[7], a[8]}, 0);
        K.invertLower(a, 3);
        // L⁻¹ = [[1/2,0,0],[-1/6,1/3,0],[-5/24,-1/12,1/4]]
        assertEquals(0.5, a[0], TOL);
        assertEquals(-1.0 / 6, a[3], TOL);
        assertEquals(1.0 / 3, a[4], TOL);
        assertEquals(-5.0 / 24, a[6], TOL);
        assertEquals(-1.0 / 12, a[7], TOL);
        assertEquals(0.25, a[8], TOL);
        assertArrayEquals(new double[] {0, 0, 0}, new double[] {a[1], a[2], a[5]}, 0, "strict upper triangle zeroed");
    }

    @Test
    void blockedCholeskyAndInverseAcrossBlockBoundaries() {
        Random rnd = new Random(7);
        for (int n : new int[] {1, 95, 96, 97, 250, 400}) {
            double[][] h = Fixtures.gram(Fixtures.activations(rnd, 2 * n + 5, n));
            double[] lf = Dense.flatten(h);
            assertTrue(K.choleskyLower(lf, n), "n=" + n);
            double[][] l = Dense.unflatten(lf, n, n);
            double scale = 0;
            for (int i = 0; i < n; i++) {
                scale = Math.max(scale, h[i][i]);
            }
            for (int i = 0; i < n; i++) {
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int k = 0; k <= j; k++) {
                        s += l[i][k] * l[j][k];
                    }
                    assertEquals(h[i][j], s, 1e-11 * scale, "L·Lᵀ n=" + n + " at " + i + "," + j);
                }
            }
            double[] xf = Dense.flatten(l);
            K.invertLower(xf, n);
            double[][] x = Dense.unflatten(xf, n, n);
            for (int i = 0; i < n; i++) {
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int k = j; k <= i; k++) {
                        s += l[i][k] * x[k][j];
                    }
                    assertEquals(i == j ? 1.0 : 0.0, s, 1e-8, "L·L⁻¹ n=" + n + " at " + i + "," + j);
                }
            }
        }
    }

    @Test
    void notPositiveDefiniteIsAReturnValue() {
        assertFalse(K.choleskyLower(new double[] {1, 2, 2, 1}, 2));
        assertFalse(K.choleskyLower(new double[] {0}, 1));
        assertFalse(K.choleskyLower(new double[] {Double.NaN}, 1));
    }

    @Test
    void productMatchesTripleLoopForEveryPart() {
        Random rnd = new Random(11);
        int m = 70;
        int n = 70;
        int k = 37;
        double[][] a = Fixtures.gaussian(rnd, m + 3, k + 2, 1);
        double[][] b = Fixtures.gaussian(rnd, k + 4, n + 5, 1);
        double[] af = Dense.flatten(a);
        double[] bf = Dense.flatten(b);
        for (Dense.Part part : Dense.Part.values()) {
            double[][] c = Fixtures.gaussian(new Random(3), m + 1, n + 2, 1);
            double[][] expect = Dense.copy(c);
            double[] cf = Dense.flatten(c);
            Dense.product(-0.5, af, 3 * (k + 2) + 2, k + 2, bf, 4 * (n + 5) + 5, n + 5, cf, 1 * (n + 2) + 2, n + 2,
                    m, n, k, part);
            c = Dense.unflatten(cf, m + 1, n + 2);
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    boolean in = part == Dense.Part.FULL || (part == Dense.Part.LOWER ? j <= i : j >= i);
                    if (in) {
                        double s = 0;
                        for (int p = 0; p < k; p++) {
                            s += a[3 + i][2 + p] * b[4 + p][5 + j];
                        }
                        expect[1 + i][2 + j] -= 0.5 * s;
                    }
                }
            }
            for (int i = 0; i < c.length; i++) {
                assertArrayEquals(expect[i], c[i], 1e-12, part + " row " + i);
            }
        }
    }
}
