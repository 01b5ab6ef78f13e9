package org.babaiquant;

import org.babaiquant.core.BabaiNearestPlane;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.Dense;
import org.babaiquant.core.TestInputs;
import org.babaiquant.core.DenseKernels;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One contract for every {@link DenseKernels} implementation available in this JVM: pure Java always, netlib when
 * native BLAS loads (after {@code mvn package} has unpacked OpenBLAS into spark-jobs/target/native, which the netlib
 * provider finds by itself; without it the native case is skipped, not failed). Products and factorisations against
 * triple loops, the triangles each operation must leave alone, and end to end: GPTQ on these kernels still equals the
 * independent Babai oracle code for code.
 */
class DenseKernelsContractTest {
    /** Products and rank-k updates of O(1) entries over k ≤ 100 terms: float64 rounding is far below this. */
    private static final double TOL = 1e-12;

    static List<DenseKernels> kernels() {
        return DenseKernels.allAvailable();
    }

    /**
     * netlib decides once per JVM which BLAS it binds, and a test that touches it before the provider could point it
     * at the bundled OpenBLAS (Spark jobs call netlib directly) leaves this JVM without native kernels. So the native
     * case also runs in a fresh JVM ({@link #main}), where the provider is first: after {@code mvn package} it must
     * load and pass every check.
     */
    @Test
    void netlibPassesTheContractInAFreshJvm() throws IOException, InterruptedException {
        Path bundled = RealData.repoRoot()
                .resolve("spark-jobs/target/native/org/bytedeco/openblas/linux-x86_64/libopenblas.so.0");
        Assumptions.assumeTrue(Files.isRegularFile(bundled), "no bundled OpenBLAS (run mvn verify, not mvn test)");
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        Process p = new ProcessBuilder(java.toString(), "-Dbabai.home=" + RealData.repoRoot().toAbsolutePath(),
                "-cp", System.getProperty("java.class.path"), DenseKernelsContractTest.class.getName())
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(300, TimeUnit.SECONDS), "contract JVM timed out");
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("netlib: every contract check passed"), out);
    }

    /** The contract on the kernels {@link DenseKernels#get()} picks in a fresh JVM, which must be netlib's. */
    public static void main(String[] args) {
        DenseKernels k = DenseKernels.get();
        if (!k.name().equals("netlib")) {
            System.out.println("netlib kernels did not load: " + DenseKernels.allAvailable());
            System.exit(2);
        }
        DenseKernelsContractTest t = new DenseKernelsContractTest();
        t.handCheckableCholeskyAndInverse(k);
        t.notPositiveDefiniteOrNotFiniteIsAReturnValue(k);
        t.blockedCholeskyAndInverseAcrossBlockBoundaries(k);
        t.gemmWithOffsetsLeadingDimensionsAndTransposes(k);
        t.syrkUpdatesTheUpperTriangleOnly(k);
        t.hessianOnTheseKernelsEqualsTheDirectSum(k);
        t.gptqOnTheseKernelsIsBabaiCodeForCode(k);
        System.out.println("netlib: every contract check passed (" + k.description() + ")");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("kernels")
    void handCheckableCholeskyAndInverse(DenseKernels k) {
        // A = L·Lᵀ with L = [[2,0,0],[1,3,0],[2,1,4]]; the strict upper triangle must be neither read nor written
        double[] a = {4, -7, -7, 2, 10, -7, 4, 5, 21};
        assertTrue(k.choleskyLower(a, 3));
        assertArrayEquals(new double[] {2, -7, -7, 1, 3, -7, 2, 1, 4}, a, TOL, k.name());
        k.invertLower(a, 3);
        // L⁻¹ = [[1/2,0,0],[-1/6,1/3,0],[-5/24,-1/12,1/4]], strict upper triangle zero
        assertArrayEquals(new double[] {0.5, 0, 0, -1.0 / 6, 1.0 / 3, 0, -5.0 / 24, -1.0 / 12, 0.25}, a, TOL, k.name());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("kernels")
    void notPositiveDefiniteOrNotFiniteIsAReturnValue(DenseKernels k) {
        assertFalse(k.choleskyLower(new double[] {1, 2, 2, 1}, 2));
        assertFalse(k.choleskyLower(new double[] {0}, 1));
        assertFalse(k.choleskyLower(new double[] {-1}, 1));
        assertFalse(k.choleskyLower(new double[] {Double.NaN}, 1));
        assertFalse(k.choleskyLower(new double[] {Double.POSITIVE_INFINITY}, 1));
        assertFalse(k.choleskyLower(new double[] {4, 0, Double.NaN, 9}, 2), "NaN below the diagonal");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("kernels")
    void blockedCholeskyAndInverseAcrossBlockBoundaries(DenseKernels k) {
        Random rnd = new Random(7);
        for (int n : new int[] {1, 2, 63, 64, 65, 95, 96, 97, 250, 400}) {
            double[][] h = gram(activations(rnd, 2 * n + 5, n));
            double[] l = Dense.flatten(h);
            assertTrue(k.choleskyLower(l, n), k.name() + " n=" + n);
            double scale = 0;
            for (int i = 0; i < n; i++) {
                scale = Math.max(scale, h[i][i]);
            }
            for (int i = 0; i < n; i++) {
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int q = 0; q <= j; q++) {
                        s += l[i * n + q] * l[j * n + q];
                    }
                    assertEquals(h[i][j], s, 1e-11 * scale, k.name() + " L·Lᵀ n=" + n + " at " + i + "," + j);
                }
                for (int j = i + 1; j < n; j++) {
                    assertEquals(h[i][j], l[i * n + j], 0, k.name() + " strict upper triangle untouched");
                }
            }
            double[] x = l.clone();
            k.invertLower(x, n);
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    if (j > i) {
                        assertEquals(0.0, x[i * n + j], 0, k.name() + " strict upper of L⁻¹ n=" + n);
                        continue;
                    }
                    double s = 0;
                    for (int q = j; q <= i; q++) {
                        s += l[i * n + q] * x[q * n + j];
                    }
                    assertEquals(i == j ? 1.0 : 0.0, s, 1e-8, k.name() + " L·L⁻¹ n=" + n + " at " + i + "," + j);
                }
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("kernels")
    void gemmWithOffsetsLeadingDimensionsAndTransposes(DenseKernels k) {
        Random rnd = new Random(11);
        int m = 70;
        int n = 53;
        int kk = 37;
        for (boolean ta : new boolean[] {false, true}) {
            for (boolean tb : new boolean[] {false, true}) {
                // stored A is m×k (or k×m) inside a larger array, likewise B; C is m×n inside a larger array
                int aRows = ta ? kk : m;
                int aCols = ta ? m : kk;
                int bRows = tb ? n : kk;
                int bCols = tb ? kk : n;
                double[] a = gaussian(rnd, (aRows + 3) * (aCols + 2));
                double[] b = gaussian(rnd, (bRows + 4) * (bCols + 5));
                double[] c = gaussian(rnd, (m + 1) * (n + 2));
                double[] expect = c.clone();
                int aOff = 3 * (aCols + 2) + 2;
                int bOff = 4 * (bCols + 5) + 5;
                int cOff = (n + 2) + 2;
                for (int i = 0; i < m; i++) {
                    for (int j = 0; j < n; j++) {
                        double s = 0;
                        for (int p = 0; p < kk; p++) {
                            double av = ta ? a[aOff + p * (aCols + 2) + i] : a[aOff + i * (aCols + 2) + p];
                            double bv = tb ? b[bOff + j * (bCols + 5) + p] : b[bOff + p * (bCols + 5) + j];
                            s += av * bv;
                        }
                        expect[cOff + i * (n + 2) + j] -= 0.5 * s;
                    }
                }
                k.gemm(ta, tb, m, n, kk, -0.5, a, aOff, aCols + 2, b, bOff, bCols + 5, c, cOff, n + 2);
                assertArrayEquals(expect, c, TOL, k.name() + " transA=" + ta + " transB=" + tb);
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("kernels")
    void syrkUpdatesTheUpperTriangleOnly(DenseKernels k) {
        Random rnd = new Random(13);
        int n = 45;
        int t = 100;
        double[] x = gaussian(rnd, (t + 2) * (n + 3));
        double[] c = gaussian(rnd, (n + 1) * (n + 4));
        double[] expect = c.clone();
        int xOff = 2 * (n + 3) + 1;
        int cOff = (n + 4) + 3;
        for (int i = 0; i < n; i++) {
            for (int j = i; j < n; j++) {
                double s = 0;
                for (int p = 0; p < t; p++) {
                    s += x[xOff + p * (n + 3) + i] * x[xOff + p * (n + 3) + j];
                }
                expect[cOff + i * (n + 4) + j] += 2 * s;
            }
        }
        k.syrkUpper(n, t, 2.0, x, xOff, n + 3, c, cOff, n + 4);
        assertArrayEquals(expect, c, 1e-11, k.name());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("kernels")
    void hessianOnTheseKernelsEqualsTheDirectSum(DenseKernels k) {
        float[][] x = new float[700][90];
        Random rnd = new Random(5);
        for (float[] row : x) {
            for (int j = 0; j < row.length; j++) {
                row[j] = (float) rnd.nextGaussian();
            }
        }
        double[][] h = new HessianAccumulator(90, k).add(x).hessian();
        for (int i = 0; i < 90; i++) {
            for (int j = 0; j < 90; j++) {
                double direct = 0;
                for (float[] row : x) {
                    direct += (double) row[i] * row[j];
                }
                assertEquals(direct, h[i][j], 1e-11 * h[i][i], k.name() + " at " + i + "," + j);
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("kernels")
    void gptqOnTheseKernelsIsBabaiCodeForCode(DenseKernels k) {
        long seed = System.nanoTime();
        Random rnd = new Random(seed);
        for (int[] size : new int[][] {{9, 37, 100}, {12, 130, 300}, {40, 300, 500}}) {
            for (ColumnOrder order : ColumnOrder.values()) {
                double[][] x = activations(rnd, size[2], size[1]);
                double[][] w = new double[size[0]][size[1]];
                for (double[] row : w) {
                    for (int j = 0; j < row.length; j++) {
                        row[j] = 0.05 * rnd.nextGaussian();
                    }
                }
                GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order).withClip(false)
                        .withGrid(new QuantGrid.Spec(3, size[1] > 64 ? 32 : -1, false, false));
                QuantizedLayer gptq = GptqSolver.quantize(w, gram(x), opt, null, k);
                BabaiNearestPlane babai = BabaiNearestPlane.fromBasis(x, gptq.report().lambda, gptq.perm());
                String where = k.name() + " seed " + seed + " " + order + " " + size[0] + "x" + size[1];
                for (int r = 0; r < w.length; r++) {
                    BabaiNearestPlane.Row row = babai.solveRow(w[r], gptq.grid(), r, false);
                    assertArrayEquals(row.codes(), gptq.codes()[r], where + " row " + r);
                    assertEquals(row.loss(), gptq.report().rowLoss[r], 1e-9 * row.loss(), where + " loss row " + r);
                }
            }
        }
    }

    private static double[] gaussian(Random rnd, int len) {
        double[] a = new double[len];
        for (int i = 0; i < len; i++) {
            a[i] = rnd.nextGaussian();
        }
        return a;
    }

    /** Correlated columns with uneven scales, as calibration activations are. */
    private static double[][] activations(Random rnd, int tokens, int n) {
        return TestInputs.activations(rnd, tokens, n);
    }

    /** XᵀX by the plain triple loop, independent of every kernel under test. */
    private static double[][] gram(double[][] x) {
        int n = x[0].length;
        double[][] h = new double[n][n];
        for (double[] row : x) {
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    h[i][j] += row[i] * row[j];
                }
            }
        }
        return h;
    }
}
