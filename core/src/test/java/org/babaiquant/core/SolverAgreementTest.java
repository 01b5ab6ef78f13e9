package org.babaiquant.core;

import org.babaiquant.io.Npy;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The production solver (one Cholesky, nearest plane on Ũ, blocked) against {@link ClassicGptq} (GPTQ's chain
 * Cholesky → inverse → Cholesky and its unblocked column loop): the same codes except rounding ties decided the other
 * way by float64 rounding (counted over the whole class: fewer than {@link #MAX_TIE_FRACTION} of the codes), the same
 * loss and bound to {@link #REL}, the same damping, order and tr(D). On every real MiniLM layer-0 weight and on random
 * layers across orders × grids × clip, with dead columns and damping escalation; and the in-place entry point equal to
 * the array one bit for bit.
 */
class SolverAgreementTest {
    private static final double REL = 1e-9;
    private static final double MAX_TIE_FRACTION = 1e-4;
    private static long codes;
    private static long ties;

    @AfterAll
    static void tiesAreRare() {
        System.out.println("SolverAgreementTest: " + ties + " of " + codes + " codes differ from classic GPTQ");
        assertTrue(ties < MAX_TIE_FRACTION * codes, ties + " of " + codes + " codes differ");
    }

    private static void assertAgree(QuantizedLayer ref, QuantizedLayer got, String what) {
        LayerReport a = ref.report();
        LayerReport b = got.report();
        assertArrayEquals(ref.perm(), got.perm(), what + ": order");
        assertEquals(a.lambda, b.lambda, 0.0, what + ": λ");
        assertEquals(a.dampAttempts, b.dampAttempts, what + ": damping attempts");
        assertEquals(a.deadColumns, b.deadColumns, what);
        assertEquals(a.traceD, b.traceD, REL * a.traceD, what + ": tr(D)");
        long differing = 0;
        for (int r = 0; r < ref.codes().length; r++) {
            for (int j = 0; j < ref.codes()[r].length; j++) {
                if (ref.codes()[r][j] != got.codes()[r][j]) {
                    differing++;
                }
            }
            assertEquals(a.rowBound[r], b.rowBound[r], REL * a.rowBound[r], what + ": bound row " + r);
        }
        synchronized (SolverAgreementTest.class) {
            codes += (long) ref.codes().length * ref.codes()[0].length;
            ties += differing;
        }
        if (differing == 0) {
            for (int r = 0; r < ref.codes().length; r++) {
                assertEquals(a.rowLoss[r], b.rowLoss[r], REL * a.rowLoss[r] + 1e-300, what + ": loss row " + r);
                assertEquals(a.rowClipped[r], b.rowClipped[r], what + ": clipped row " + r);
            }
        } else {
            System.out.println(what + ": " + differing + " codes differ (rounding ties)");
        }
        assertEquals(a.loss(), b.loss(), REL * a.loss(), what + ": loss");
        assertTrue(b.boundViolations() <= a.boundViolations(), what + ": bound violations");
    }

    static Path data() {
        for (Path p = Paths.get("").toAbsolutePath(); p != null; p = p.getParent()) {
            Path d = p.resolve("data").resolve("minilm-l6-v2");
            if (Files.isDirectory(d)) {
                return d;
            }
        }
        throw new AssertionError("the bundled MiniLM data (data/minilm-l6-v2) is missing above "
                + Paths.get("").toAbsolutePath());
    }

    @Test
    void everyRealMiniLmLayerInEveryOrderAndClipMode() {
        String[][] layers = {{"q_proj", "attn_in"}, {"k_proj", "attn_in"}, {"v_proj", "attn_in"},
                {"o_proj", "o_proj_in"}, {"ffn_up", "ffn_up_in"}, {"ffn_down", "ffn_down_in"}};
        Path d = data();
        for (String[] l : layers) {
            double[][] w = Npy.readMatrix(d.resolve("weights/layer0_" + l[0] + ".weight.npy"));
            double[][] h = new HessianAccumulator(w[0].length)
                    .add(Npy.readMatrixF32(d.resolve("activations/layer0_" + l[1] + ".calib.npy"))).hessian();
            for (ColumnOrder order : ColumnOrder.values()) {
                for (boolean clip : new boolean[] {true, false}) {
                    GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order).withClip(clip)
                            .withGrid(new QuantGrid.Spec(4, 128, false, false));
                    assertAgree(ClassicGptq.quantize(w, h, opt, null), GptqSolver.quantize(w, h, opt),
                            l[0] + " 4-bit g128 " + order + (clip ? " clip" : " no-clip"));
                }
            }
            GptqSolver.Options sym3 = GptqSolver.Options.defaults().withOrder(ColumnOrder.ACT_ORDER)
                    .withGrid(new QuantGrid.Spec(3, -1, true, true));
            assertAgree(ClassicGptq.quantize(w, h, sym3, null), GptqSolver.quantize(w, h, sym3),
                    l[0] + " 3-bit sym mse per-row act-order");
        }
    }

    @Test
    void randomLayersAcrossOrdersGridsClipAndBlockSizes() {
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        int n = 203; // crosses blocks, strips and the factorisations' blocks unevenly
        double[][] w = Fixtures.gaussian(rnd, 37, n, 0.05);
        double[][] h = Fixtures.gram(Fixtures.activations(rnd, 500, n));
        QuantGrid.Spec[] grids = {new QuantGrid.Spec(4, -1, false, false), new QuantGrid.Spec(3, 32, true, false),
                new QuantGrid.Spec(2, 64, false, true), new QuantGrid.Spec(8, 128, false, false)};
        for (ColumnOrder order : ColumnOrder.values()) {
            for (QuantGrid.Spec g : grids) {
                for (boolean clip : new boolean[] {true, false}) {
                    for (int block : new int[] {128, 50}) {
                        GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order).withClip(clip)
                                .withGrid(g).withBlockSize(block);
                        assertAgree(ClassicGptq.quantize(w, h, opt, null), GptqSolver.quantize(w, h, opt),
                                "seed " + seed + " " + order + " " + g + (clip ? " clip" : " no-clip") + " bs "
                                        + block);
                    }
                }
            }
        }
    }

    /** H with inputs that never fired, and one that needs damping escalation (indefinite, positive diagonal). */
    private static double[][] hardHessian(Random rnd, int n, boolean indefinite) {
        double[][] h = Fixtures.gram(Fixtures.activations(rnd, 300, n));
        for (int j : new int[] {0, 17, n - 1}) {
            for (int i = 0; i < n; i++) {
                h[i][j] = 0;
                h[j][i] = 0;
            }
        }
        if (indefinite) {
            double mean = 0;
            for (int j = 0; j < n; j++) {
                mean += h[j][j];
            }
            mean /= n;
            for (int j = 0; j < n; j++) {
                if (h[j][j] > 0) {
                    h[j][j] -= Math.min(0.05 * mean, 0.5 * h[j][j]);
                }
            }
            // make it surely indefinite: a 2×2 block [[a, b], [b, a]] with b > a has eigenvalue a − b < 0
            h[3][5] = h[5][3] = 2 * Math.max(h[3][3], h[5][5]);
        }
        return h;
    }

    @Test
    void deadColumnsAndDampingEscalation() {
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        int n = 90;
        double[][] w = Fixtures.gaussian(rnd, 21, n, 0.05);
        for (boolean indefinite : new boolean[] {false, true}) {
            double[][] h = hardHessian(rnd, n, indefinite);
            for (ColumnOrder order : ColumnOrder.values()) {
                GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order)
                        .withGrid(new QuantGrid.Spec(4, 16, false, false)).withBlockSize(40);
                QuantizedLayer ref = ClassicGptq.quantize(w, h, opt, null);
                QuantizedLayer got = GptqSolver.quantize(w, h, opt);
                assertEquals(3, got.report().deadColumns);
                if (indefinite) {
                    assertTrue(got.report().dampAttempts > 1, "seed " + seed + " " + order + ": no escalation");
                }
                assertAgree(ref, got, "seed " + seed + " " + order + (indefinite ? " escalated" : " dead columns"));
            }
        }
    }

    private static double[] flat(double[][] h) {
        return Dense.flatten(h);
    }

    private static void assertIdentical(QuantizedLayer a, QuantizedLayer b, String what) {
        assertArrayEquals(a.perm(), b.perm(), what);
        for (int r = 0; r < a.codes().length; r++) {
            assertArrayEquals(a.codes()[r], b.codes()[r], what + " row " + r);
            assertArrayEquals(a.dequant()[r], b.dequant()[r], 0.0, what + " row " + r);
        }
        assertArrayEquals(a.report().rowLoss, b.report().rowLoss, 0.0, what);
        assertArrayEquals(a.report().rowBound, b.report().rowBound, 0.0, what);
        assertArrayEquals(a.report().rowClipped, b.report().rowClipped, what);
        assertEquals(a.report().lambda, b.report().lambda, 0.0, what);
        assertEquals(a.report().dampAttempts, b.report().dampAttempts, what);
        assertEquals(a.report().traceD, b.report().traceD, 0.0, what);
        assertEquals(a.report().deadColumns, b.report().deadColumns, what);
        assertEquals(a.report().bitsPerWeight, b.report().bitsPerWeight, 0.0, what);
    }

    @Test
    void inPlaceEntryPointIsTheArrayOneBitForBit() {
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        int n = 150;
        double[][] w = Fixtures.gaussian(rnd, 19, n, 0.05);
        double[][] given = Dense.copy(w);
        for (boolean indefinite : new boolean[] {false, true}) {
            double[][] h = hardHessian(rnd, n, indefinite);
            for (ColumnOrder order : ColumnOrder.values()) {
                GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order).withBlockSize(64)
                        .withGrid(new QuantGrid.Spec(4, 32, false, false));
                double[] hf = flat(h);
                QuantizedLayer got = GptqSolver.quantizeInPlace(w, hf, opt, null, DenseKernels.get());
                assertIdentical(GptqSolver.quantize(w, h, opt), got, "seed " + seed + " " + order + " indefinite "
                        + indefinite);
            }
        }
        for (int r = 0; r < w.length; r++) {
            assertArrayEquals(given[r], w[r], 0.0, "W must not be modified (dead columns are zeroed in a copy)");
        }
    }

    @Test
    void inPlaceEntryPointRejectsBadHessiansAndOtherMethods() {
        double[][] w = {{0.1, 0.2}, {0.3, -0.1}};
        GptqSolver.Options opt = GptqSolver.Options.defaults();
        DenseKernels k = DenseKernels.get();
        assertThrows(org.babaiquant.BadInputException.class,
                () -> GptqSolver.quantizeInPlace(w, new double[3], opt, null, k));
        assertThrows(org.babaiquant.BadInputException.class,
                () -> GptqSolver.quantizeInPlace(w, new double[] {1, 0, Double.NaN, 1}, opt, null, k));
        assertThrows(org.babaiquant.BadInputException.class,
                () -> GptqSolver.quantizeInPlace(w, new double[] {1, 0.5, -0.5, 1}, opt, null, k));
        assertThrows(NotPositiveDefiniteException.class,
                () -> GptqSolver.quantizeInPlace(w, new double[] {-1, 0, 0, 1}, opt, null, k));
        assertThrows(IllegalArgumentException.class, () -> GptqSolver.quantizeInPlace(w, new double[] {1, 0, 0, 1},
                opt.withMethod(Method.RTN), null, k));
    }

    /** The pure-Java kernels under another name: the sweep then splits blocks into 32-column strips with products. */
    private static final DenseKernels DELEGATE = new DenseKernels() {
        @Override
        public String name() {
            return "delegate";
        }

        @Override
        public void gemm(boolean transA, boolean transB, int m, int n, int k, double alpha, double[] a, int aOff,
                         int lda, double[] b, int bOff, int ldb, double[] c, int cOff, int ldc) {
            Dense.INSTANCE.gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        }

        @Override
        public void syrkUpper(int n, int k, double alpha, double[] a, int aOff, int lda, double[] c, int cOff, int ldc) {
            Dense.INSTANCE.syrkUpper(n, k, alpha, a, aOff, lda, c, cOff, ldc);
        }

        @Override
        public boolean choleskyLower(double[] a, int n) {
            return Dense.INSTANCE.choleskyLower(a, n);
        }

        @Override
        public void invertLower(double[] l, int n) {
            Dense.INSTANCE.invertLower(l, n);
        }
    };

    @Test
    void stripsWithProductsBetweenThemAgreeWithClassicGptq() {
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        int n = 333;
        double[][] w = Fixtures.gaussian(rnd, 45, n, 0.05);
        double[][] h = Fixtures.gram(Fixtures.activations(rnd, 600, n));
        for (ColumnOrder order : ColumnOrder.values()) {
            for (int block : new int[] {128, 100, 7}) {
                GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order).withBlockSize(block)
                        .withGrid(new QuantGrid.Spec(4, 64, false, false)).withClip(block != 100);
                assertAgree(ClassicGptq.quantize(w, h, opt, null), GptqSolver.quantize(w, h, opt, null, DELEGATE),
                        "seed " + seed + " " + order + " strips, block " + block);
            }
        }
    }

    @Test
    void slabsOfRowsChangeNothing() {
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        int n = 140;
        double[][] w = Fixtures.gaussian(rnd, 29, n, 0.05);
        double[][] h = Fixtures.gram(Fixtures.activations(rnd, 300, n));
        GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(ColumnOrder.ACT_ORDER);
        QuantizedLayer whole = GptqSolver.quantize(w, h, opt);
        DampedFactor.Upper f = DampedFactor.upper(h, whole.perm(), 0.01, 6, DenseKernels.get());
        LayerReport rep = new LayerReport();
        rep.rowLoss = new double[29];
        rep.rowBound = new double[29];
        rep.rowClipped = new int[29];
        int[][] codes = new int[29][n];
        double[][] dq = new double[29][n];
        NearestPlaneSweep.run(w, f, whole.perm(), whole.grid(), true, 128, 8, codes, dq, rep, DenseKernels.get(),
                new SweepTimings());
        for (int r = 0; r < 29; r++) {
            assertArrayEquals(whole.codes()[r], codes[r], "seed " + seed + " row " + r);
            assertArrayEquals(whole.dequant()[r], dq[r], 0.0, "seed " + seed + " row " + r);
        }
        assertArrayEquals(whole.report().rowLoss, rep.rowLoss, 0.0);
    }

    /** The panels' stride: room for every row, whole 64-byte lines, an odd number of them, at most 15 elements of pad. */
    @Test
    void panelStrideIsAnOddNumberOfLinesJustAboveTheRows() {
        for (int m = 1; m <= 20_000; m++) {
            int ld = NearestPlaneSweep.panelStride(m);
            assertTrue(ld >= m && ld - m < 16 && ld % 8 == 0 && (ld / 8) % 2 == 1, m + " -> " + ld);
        }
        assertEquals(4104, NearestPlaneSweep.panelStride(4096));
    }

    @Test
    void rowChunksOfTheStripChangeNothing() {
        // enough rows that every parallel task of the whole-slab sweep holds more than STRIP_ROWS rows (chunked);
        // the reference sweeps slabs of 8 rows (one task, one chunk each)
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        int n = 72;
        int rows = 4 * Runtime.getRuntime().availableProcessors() * (NearestPlaneSweep.STRIP_ROWS + 8) + 5;
        double[][] w = Fixtures.gaussian(rnd, rows, n, 0.05);
        double[][] h = Fixtures.gram(Fixtures.activations(rnd, 200, n));
        GptqSolver.Options opt = GptqSolver.Options.defaults().withBlockSize(32)
                .withGrid(new QuantGrid.Spec(3, 24, false, false));
        QuantizedLayer whole = GptqSolver.quantize(w, h, opt);
        DampedFactor.Upper f = DampedFactor.upper(h, whole.perm(), 0.01, 6, DenseKernels.get());
        LayerReport rep = new LayerReport();
        rep.rowLoss = new double[rows];
        rep.rowBound = new double[rows];
        rep.rowClipped = new int[rows];
        int[][] codes = new int[rows][n];
        double[][] dq = new double[rows][n];
        NearestPlaneSweep.run(w, f, whole.perm(), whole.grid(), true, 32, 8, codes, dq, rep, DenseKernels.get(),
                new SweepTimings());
        for (int r = 0; r < rows; r++) {
            assertArrayEquals(whole.codes()[r], codes[r], "seed " + seed + " row " + r);
            assertArrayEquals(whole.dequant()[r], dq[r], 0.0, "seed " + seed + " row " + r);
        }
        assertArrayEquals(whole.report().rowLoss, rep.rowLoss, 0.0);
        assertArrayEquals(whole.report().rowBound, rep.rowBound, 0.0);
        assertArrayEquals(whole.report().rowClipped, rep.rowClipped);
    }

    @Test
    void factorThenSweepIsTheSolveBitForBit() {
        // the benchmark times GptqSolver.prepareAndFactor and GptqSolver.sweep apart: together they are quantize
        long seed = Fixtures.freshSeed();
        Random rnd = new Random(seed);
        int n = 130;
        double[][] w = Fixtures.gaussian(rnd, 23, n, 0.05);
        double[][] h = hardHessian(rnd, n, true);
        for (ColumnOrder order : ColumnOrder.values()) {
            GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order).withBlockSize(64)
                    .withGrid(new QuantGrid.Spec(4, 32, false, false));
            QuantizedLayer phases = GptqSolver.sweep(GptqSolver.prepareAndFactor(w, h, opt, null, DenseKernels.get()),
                    opt, DenseKernels.get());
            assertIdentical(GptqSolver.quantize(w, h, opt), phases, "seed " + seed + " " + order);
        }
        assertThrows(IllegalArgumentException.class, () -> GptqSolver.sweep(
                GptqSolver.prepareAndFactor(w, h, GptqSolver.Options.defaults(), null, DenseKernels.get()),
                GptqSolver.Options.defaults().withMethod(Method.RTN), DenseKernels.get()));
    }

    @Test
    void theFactorIsTheReversedCholeskyAndGptqsUIsItsInverse() {
        Random rnd = new Random(11);
        int n = 97;
        double[][] h = Fixtures.gram(Fixtures.activations(rnd, 250, n));
        int[] perm = ColumnOrder.ACT_ORDER.permutation(h, 0);
        DampedFactor.Upper f = DampedFactor.upper(h, perm, 0.01, 1, DenseKernels.get());
        DampedFactor u = DampedFactor.of(h, perm, 0.01, 1);
        double scale = 0;
        for (int i = 0; i < n; i++) {
            scale = Math.max(scale, h[i][i]);
        }
        for (int i = 0; i < n; i++) {
            for (int j = i; j < n; j++) {
                // (Ũ·Ũᵀ)_ij = H_P + λI
                double s = 0;
                for (int k = j; k < n; k++) {
                    s += f.ut(i, k) * f.ut(j, k);
                }
                double want = h[perm[i]][perm[j]] + (i == j ? f.lambda() : 0);
                assertEquals(want, s, 1e-12 * scale, i + "," + j);
                // (Ũ·U)_ij = δ_ij
                double p = 0;
                for (int k = i; k <= j; k++) {
                    p += f.ut(i, k) * u.u[k][j];
                }
                assertEquals(i == j ? 1 : 0, p, 1e-9, "Ũ·U at " + i + "," + j);
            }
            assertEquals(1 / u.u[i][i], f.ut(i, i), 1e-12 * f.ut(i, i));
        }
        assertEquals(u.traceD, f.traceD(), 1e-12 * u.traceD);
    }

    @Test
    void pivotedCholeskyFactorsThePivotedMatrixAndLeavesTheUpperTriangle() {
        Random rnd = new Random(5);
        for (int n : new int[] {1, 2, 63, 64, 65, 130, 300}) {
            double[][] h = Fixtures.gram(Fixtures.activations(rnd, 2 * n + 3, n));
            double[] a = flat(h);
            for (int i = 0; i < n; i++) {
                a[i * n + i] += 1e-3;
            }
            double[] before = a.clone();
            int[] seq = new int[n];
            assertTrue(DampedFactor.pivotedCholeskyLower(a, n, seq, DenseKernels.get()), "n=" + n);
            int[] sorted = seq.clone();
            Arrays.sort(sorted);
            for (int i = 0; i < n; i++) {
                assertEquals(i, sorted[i], "a permutation");
            }
            double scale = 0;
            for (int i = 0; i < n; i++) {
                scale = Math.max(scale, before[i * n + i]);
                for (int j = i + 1; j < n; j++) {
                    assertEquals(before[i * n + j], a[i * n + j], 0.0, "strict upper triangle written at " + i + "," + j);
                }
            }
            for (int i = 0; i < n; i++) {
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int k = 0; k <= j; k++) {
                        s += a[i * n + k] * a[j * n + k];
                    }
                    assertEquals(before[seq[i] * n + seq[j]], s, 1e-12 * scale, "n=" + n + " (" + i + "," + j + ")");
                }
            }
            // each pivot was the smallest Schur complement: L_tt² ≤ the Schur diagonal of every later candidate
            for (int t = 0; t + 1 < n; t++) {
                for (int i = t + 1; i < n; i++) {
                    double schur = a[i * n + i] * a[i * n + i];
                    for (int k = t; k < i; k++) {
                        schur += a[i * n + k] * a[i * n + k];
                    }
                    assertTrue(a[t * n + t] * a[t * n + t] <= schur * (1 + 1e-9), "n=" + n + " step " + t);
                }
            }
        }
        assertTrue(!DampedFactor.pivotedCholeskyLower(new double[] {1, 2, 2, 1}, 2, new int[2], DenseKernels.get()));
    }

    @Test
    void symmetricPermutationInPlace() {
        Random rnd = new Random(3);
        int n = 77;
        double[][] h = Fixtures.gram(Fixtures.activations(rnd, 100, n));
        for (ColumnOrder order : new ColumnOrder[] {ColumnOrder.NATURAL, ColumnOrder.REVERSE, ColumnOrder.ACT_ORDER}) {
            int[] sigma = order.permutation(h, 0);
            double[] a = flat(h);
            DampedFactor.permuteSymmetric(a, n, sigma);
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    assertEquals(h[sigma[i]][sigma[j]], a[i * n + j], 0.0, order + " " + i + "," + j);
                }
            }
        }
    }
}
