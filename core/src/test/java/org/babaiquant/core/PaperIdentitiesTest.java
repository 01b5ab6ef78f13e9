package org.babaiquant.core;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The paper's identities (Chen et al. 2025, arXiv 2507.18553) on random inputs with fresh seeds. Codes are integers,
 * so "equal" is exact; losses are float64 sums, compared to a relative 1e-9.
 */
class PaperIdentitiesTest {
    private static final double REL = 1e-9;
    /** (rows, n, tokens): n crosses the 128-column block and the 96-row factorisation block. */
    private static final int[][] SIZES = {{6, 8, 40}, {9, 37, 100}, {12, 130, 300}, {5, 200, 420}};

    private static GptqSolver.Options noClip(ColumnOrder order, int bits, int groupSize) {
        return GptqSolver.Options.defaults().withOrder(order).withClip(false)
                .withGrid(new QuantGrid.Spec(bits, groupSize, false, false));
    }

    @ParameterizedTest
    @EnumSource(ColumnOrder.class)
    void gptqInAnyOrderIsBabaiOnTheCorrespondinglyPermutedBasis(ColumnOrder order) {
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        for (int[] size : SIZES) {
            for (double percdamp : new double[] {0.0, 0.01}) {
                double[][] x = Fixtures.activations(rnd, size[2], size[1]);
                double[][] w = Fixtures.gaussian(rnd, size[0], size[1], 0.05);
                GptqSolver.Options opt = noClip(order, 3, size[1] > 64 ? 32 : -1).withDamp(percdamp);
                QuantizedLayer gptq = GptqSolver.quantize(w, Fixtures.gram(x), opt);
                // independent oracle: Householder QR of [X; √λ I] in basis order reverse(P)
                BabaiNearestPlane babai = BabaiNearestPlane.fromBasis(x, gptq.report().lambda, gptq.perm());
                String where = "seed " + seed + " order " + order + " size " + size[0] + "x" + size[1] + " damp " + percdamp;
                for (int r = 0; r < w.length; r++) {
                    BabaiNearestPlane.Row row = babai.solveRow(w[r], gptq.grid(), r, false);
                    assertArrayEquals(row.codes(), gptq.codes()[r], where + " row " + r);
                    assertEquals(row.loss(), gptq.report().rowLoss[r], REL * row.loss(), where + " loss row " + r);
                    assertEquals(row.bound(), gptq.report().rowBound[r], REL * row.bound(), where + " bound row " + r);
                }
            }
        }
    }

    @Test
    void backToFrontGptqIsBabaiOnXDiagSOnTheNaturalBasis() {
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        double[][] x = Fixtures.activations(rnd, 200, 64);
        double[][] w = Fixtures.gaussian(rnd, 10, 64, 0.05);
        QuantizedLayer gptq = GptqSolver.quantize(w, Fixtures.gram(x), noClip(ColumnOrder.REVERSE, 4, -1).withDamp(0));
        int[] natural = new int[64];
        for (int j = 0; j < 64; j++) {
            natural[j] = 63 - j; // perm P = reverse, so the Babai basis reverse(P) is 0..63
        }
        assertArrayEquals(natural, gptq.perm());
        BabaiNearestPlane babai = BabaiNearestPlane.fromBasis(x, 0, gptq.perm());
        for (int r = 0; r < w.length; r++) {
            assertArrayEquals(babai.solveRow(w[r], gptq.grid(), r, false).codes(), gptq.codes()[r], "seed " + seed);
        }
    }

    @ParameterizedTest
    @EnumSource(ColumnOrder.class)
    void lossIdentityBoundAndOneThird(ColumnOrder order) {
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        int n = 150;
        double[][] x = Fixtures.gaussian(rnd, 400, n, 1);
        double[][] w = Fixtures.gaussian(rnd, 40, n, 1);
        double[][] h = Fixtures.gram(x);
        // small scales: a fixed fine grid, so that rounding errors are ~uniform on [-s/2, s/2]
        double[][] scale = new double[40][1];
        double[][] zero = new double[40][1];
        for (int r = 0; r < 40; r++) {
            scale[r][0] = 1e-3 * (1 + r % 3);
            zero[r][0] = 7;
        }
        QuantGrid grid = QuantGrid.of(8, -1, n, scale, zero);
        QuantizedLayer q = GptqSolver.quantize(w, h, noClip(order, 8, -1), grid);
        LayerReport rep = q.report();
        for (int r = 0; r < 40; r++) {
            double direct = Fixtures.dampedError(w[r], q.dequant()[r], h, rep.lambda);
            assertEquals(direct, rep.rowLoss[r], 1e-8 * direct, "loss identity, seed " + seed + " row " + r);
            assertTrue(rep.rowLoss[r] <= rep.rowBound[r], "Babai bound, seed " + seed + " row " + r);
        }
        assertEquals(0, rep.clipped());
        assertEquals(0, rep.boundViolations());
        // Each step's error is (t − rint t)·s/U_kk with t − rint t ~ uniform(−½, ½) for a fine grid: the term over its
        // bound, 4(t − rint t)², has mean 1/3 and variance 1/5 − 1/9 = 4/45. The ratio of sums is a weighted mean of
        // these with weights a = s²/U_kk²; allow 5 standard deviations for its effective sample size (Σa)²/Σa².
        DampedFactor f = DampedFactor.of(h, q.perm(), 0.01, 1);
        double sa = 0;
        double sa2 = 0;
        for (int r = 0; r < 40; r++) {
            for (int k = 0; k < n; k++) {
                double a = scale[r][0] * scale[r][0] / (f.u[k][k] * f.u[k][k]);
                sa += a;
                sa2 += a * a;
            }
        }
        double sd = Math.sqrt(4.0 / 45 * sa2 / (sa * sa));
        assertEquals(1.0 / 3, rep.lossOverBound(), 5 * sd, "average loss/bound, seed " + seed + " (sd " + sd + ")");
    }

    @ParameterizedTest
    @EnumSource(ColumnOrder.class)
    void diagonalHessianGivesRoundToNearestForAnyOrder(ColumnOrder order) {
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        int n = 140;
        double[][] h = new double[n][n];
        for (int j = 0; j < n; j++) {
            h[j][j] = Math.exp(rnd.nextGaussian());
        }
        double[][] w = Fixtures.gaussian(rnd, 20, n, 0.1);
        for (boolean clip : new boolean[] {true, false}) {
            GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order).withClip(clip)
                    .withGrid(new QuantGrid.Spec(3, 64, false, false));
            QuantizedLayer gptq = GptqSolver.quantize(w, h, opt);
            QuantizedLayer rtn = GptqSolver.quantize(w, h, opt.withMethod(Method.RTN));
            for (int r = 0; r < w.length; r++) {
                assertArrayEquals(rtn.codes()[r], gptq.codes()[r], "seed " + seed + " clip " + clip + " row " + r);
                assertEquals(rtn.report().rowLoss[r], gptq.report().rowLoss[r], REL * rtn.report().rowLoss[r] + 1e-300);
            }
        }
    }

    @Test
    void blockingDoesNotChangeTheCodes() {
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        int n = 300;
        double[][] h = Fixtures.gram(Fixtures.activations(rnd, 500, n));
        double[][] w = Fixtures.gaussian(rnd, 33, n, 0.05);
        for (boolean clip : new boolean[] {true, false}) {
            GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(ColumnOrder.ACT_ORDER).withClip(clip);
            QuantizedLayer unblocked = GptqSolver.quantize(w, h, opt.withBlockSize(n));
            for (int block : new int[] {1, 7, 128}) {
                QuantizedLayer blocked = GptqSolver.quantize(w, h, opt.withBlockSize(block));
                for (int r = 0; r < w.length; r++) {
                    assertArrayEquals(unblocked.codes()[r], blocked.codes()[r],
                            "seed " + seed + " block " + block + " clip " + clip + " row " + r);
                }
                assertEquals(unblocked.report().loss(), blocked.report().loss(), REL * unblocked.report().loss());
            }
        }
    }

    @Test
    void babaiMethodFromTheHessianEqualsGptqWithClipping() {
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        double[][] h = Fixtures.gram(Fixtures.activations(rnd, 300, 90));
        double[][] w = Fixtures.gaussian(rnd, 17, 90, 0.05);
        for (ColumnOrder order : ColumnOrder.values()) {
            GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order);
            QuantizedLayer gptq = GptqSolver.quantize(w, h, opt);
            QuantizedLayer babai = GptqSolver.quantize(w, h, opt.withMethod(Method.BABAI));
            for (int r = 0; r < w.length; r++) {
                assertArrayEquals(gptq.codes()[r], babai.codes()[r], "seed " + seed + " " + order + " row " + r);
            }
            assertEquals(gptq.report().clipped(), babai.report().clipped());
            assertEquals(gptq.report().traceD, babai.report().traceD, REL * gptq.report().traceD);
        }
    }

    /** The paper's 2-D example: X = [[1,1],[0,1]], w = (0.4, 0.4), scale 1. */
    @Test
    void handExampleFromThePaper() {
        double[][] x = {{1, 1}, {0, 1}};
        double[][] h = Fixtures.gram(x); // [[1,1],[1,2]]
        double[][] w = {{0.4, 0.4}};
        QuantGrid grid = QuantGrid.of(8, -1, 2, new double[][] {{1}}, new double[][] {{0}});
        GptqSolver.Options opt = GptqSolver.Options.defaults().withDamp(0).withClip(false);
        for (Method method : new Method[] {Method.GPTQ, Method.BABAI}) {
            QuantizedLayer back = GptqSolver.quantize(w, h, opt.withMethod(method).withOrder(ColumnOrder.REVERSE), grid);
            assertArrayEquals(new int[] {1, 0}, back.codes()[0], method + " back-to-front");
            assertEquals(0.2, back.report().loss(), 1e-12);
            assertEquals(0.5, back.report().bound(), 1e-12);
            QuantizedLayer front = GptqSolver.quantize(w, h, opt.withMethod(method).withOrder(ColumnOrder.NATURAL), grid);
            assertArrayEquals(new int[] {0, 1}, front.codes()[0], method + " front-to-back");
            assertEquals(0.4, front.report().loss(), 1e-12);
            assertEquals(0.625, front.report().bound(), 1e-12);
        }
    }
}
