package org.babaiquant.gpu;

import org.babaiquant.BadInputException;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqPacking;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantBackend.ActivationType;
import org.babaiquant.serving.PackedGptq;
import org.babaiquant.serving.ServingKernels;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.core.TestInputs;
import org.babaiquant.io.Npy;
import org.babaiquant.core.Half;
import org.babaiquant.nonclip.Ssqr;
import org.babaiquant.nonclip.SsqrLayer;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The contract every backend passes against the CPU reference (core's GptqSolver, HessianAccumulator, and float64
 * dequantize-then-multiply), on random inputs (fresh seed, printed in every message) and on the real MiniLM layer-0
 * data. Criteria: {@link Parity}. Subclasses: the CPU backend, the CUDA sweep's host emulation (both run everywhere)
 * and the CUDA backend (skipped without a GPU).
 */
abstract class BackendParityContract {
    protected final long seed = System.nanoTime() ^ 0x5DEECE66DL;
    protected final Random rnd = new Random(seed);

    /** The backend under test. */
    protected abstract QuantBackend backend();

    static Path data() {
        Path d = Path.of(System.getProperty("babai.repo.root", ".."), "data", "minilm-l6-v2");
        assertTrue(Files.isDirectory(d), "the bundled MiniLM data is missing at " + d.toAbsolutePath());
        return d;
    }

    static double[][] realWeights(String layer) {
        return Npy.readMatrix(data().resolve("weights/layer0_" + layer + ".weight.npy"));
    }

    static float[][] realActivations(String site) {
        return Npy.readMatrixF32(data().resolve("activations/layer0_" + site + ".calib.npy"));
    }

    // ---- Hessian --------------------------------------------------------------------------------------------------

    private float[] gaussianFloats(int count) {
        float[] x = new float[count];
        for (int i = 0; i < count; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        return x;
    }

    private static HessianAccumulator reference(float[] x, int tokens, int n) {
        float[][] rows = new float[tokens][n];
        for (int t = 0; t < tokens; t++) {
            System.arraycopy(x, t * n, rows[t], 0, n);
        }
        return new HessianAccumulator(n).add(rows);
    }

    @Test
    void hessianOfRandomFloat32TilesMatches() {
        int n = 300; // not a multiple of the 128-wide kernel tile
        float[] x = gaussianFloats(1517 * n);
        try (QuantBackend.HessianSum s = backend().hessian(n)) {
            s.add(java.util.Arrays.copyOfRange(x, 0, 1000 * n), 1000);
            s.add(java.util.Arrays.copyOfRange(x, 1000 * n, x.length), 517);
            HessianAccumulator got = s.toAccumulator();
            assertEquals(1517, got.tokens());
            double err = Parity.hessian(reference(x, 1517, n), got);
            assertTrue(err <= Parity.MAX_HESSIAN_REL, "seed " + seed + ": max |dH|/sqrt(HiiHjj) = " + err);
        }
    }

    @Test
    void hessianOfRawHalfTilesMatches() {
        int n = 130;
        int tokens = 333;
        float[] x = gaussianFloats(tokens * n);
        for (ActivationType type : new ActivationType[] {ActivationType.F16, ActivationType.BF16, ActivationType.F32}) {
            ByteBuffer b = ByteBuffer.allocate(5 + type.bytes * x.length).order(ByteOrder.LITTLE_ENDIAN);
            b.position(5);
            float[] exact = new float[x.length];
            for (int i = 0; i < x.length; i++) {
                switch (type) {
                    case F16 -> {
                        short h = Half.fromFloat(x[i]);
                        b.putShort(h);
                        exact[i] = Half.toFloat(h);
                    }
                    case BF16 -> {
                        int bits = Float.floatToRawIntBits(x[i]) & 0xFFFF0000;
                        b.putShort((short) (bits >>> 16));
                        exact[i] = Float.intBitsToFloat(bits);
                    }
                    case F32 -> {
                        b.putFloat(x[i]);
                        exact[i] = x[i];
                    }
                }
            }
            try (QuantBackend.HessianSum s = backend().hessian(n)) {
                s.addRaw(b.array(), 5, tokens, type);
                double err = Parity.hessian(reference(exact, tokens, n), s.toAccumulator());
                assertTrue(err <= Parity.MAX_HESSIAN_REL, "seed " + seed + " " + type + ": " + err);
            }
        }
    }

    @Test
    void hessianOfRealMiniLmActivationsMatches() {
        float[][] act = realActivations("attn_in");
        int n = act[0].length;
        float[] flat = new float[act.length * n];
        for (int t = 0; t < act.length; t++) {
            System.arraycopy(act[t], 0, flat, t * n, n);
        }
        try (QuantBackend.HessianSum s = backend().hessian(n)) {
            s.add(flat, act.length);
            double err = Parity.hessian(new HessianAccumulator(n).add(act), s.toAccumulator());
            assertTrue(err <= Parity.MAX_HESSIAN_REL, "real attn_in: " + err);
        }
    }

    @Test
    void hessianRefusesNonFiniteActivations() {
        try (QuantBackend.HessianSum s = backend().hessian(4)) {
            float[] x = {1, 2, 3, Float.NaN};
            assertThrows(BadInputException.class, () -> s.add(x, 1));
            byte[] inf = {0, 0x7C}; // fp16 +Inf
            byte[] four = new byte[8];
            System.arraycopy(inf, 0, four, 6, 2);
            assertThrows(BadInputException.class, () -> s.addRaw(four, 0, 1, ActivationType.F16));
            assertEquals(0, s.tokens());
        }
    }

    // ---- solver ---------------------------------------------------------------------------------------------------

    private double[][] gaussian(int rows, int cols, double sd) {
        double[][] m = new double[rows][cols];
        for (double[] row : m) {
            for (int j = 0; j < cols; j++) {
                row[j] = sd * rnd.nextGaussian();
            }
        }
        return m;
    }

    /** H of calibration-like inputs: correlated columns with uneven scales. */
    private double[][] correlatedHessian(int tokens, int n) {
        return TestInputs.hessian(rnd, tokens, n);
    }

    private void assertSameLayer(QuantizedLayer ref, QuantizedLayer got, String what) {
        Parity.Layers p = Parity.layers(ref, got);
        assertTrue(p.ok(), what + " (seed " + seed + "): " + p);
        assertEquals(ref.report().traceD, got.report().traceD, 0.0, what);
        assertEquals(ref.report().lambda, got.report().lambda, 0.0, what);
        assertEquals(ref.report().dampAttempts, got.report().dampAttempts, what);
        assertEquals(ref.report().deadColumns, got.report().deadColumns, what);
        assertEquals(ref.report().bitsPerWeight, got.report().bitsPerWeight, 0.0, what);
        assertEquals(ref.report().bound(), got.report().bound(), 1e-12 * ref.report().bound(), what);
        assertTrue(java.util.Arrays.equals(ref.perm(), got.perm()), what + ": orders differ");
    }

    @Test
    void solverMatchesOnRandomLayersInEveryOrderGridAndClipMode() {
        double[][] w = gaussian(48, 256, 0.05);
        double[][] h = correlatedHessian(600, 256);
        for (ColumnOrder order : ColumnOrder.values()) {
            for (boolean clip : new boolean[] {true, false}) {
                for (int g : new int[] {-1, 64}) {
                    GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order).withClip(clip)
                            .withGrid(new QuantGrid.Spec(3, g, false, false)).withBlockSize(96);
                    assertSameLayer(GptqSolver.quantize(w, h, opt), backend().quantize(w, h, opt, null),
                            order + (clip ? " clip" : " no-clip") + " g" + g);
                }
            }
        }
    }

    @Test
    void solverMatchesOnRealMiniLmLayers() {
        String[][] layers = {{"q_proj", "attn_in"}, {"o_proj", "o_proj_in"}, {"ffn_down", "ffn_down_in"}};
        for (String[] l : layers) {
            double[][] w = realWeights(l[0]);
            double[][] h = new HessianAccumulator(w[0].length).add(realActivations(l[1])).hessian();
            GptqSolver.Options g128 = GptqSolver.Options.defaults().withGrid(new QuantGrid.Spec(4, 128, false, false));
            assertSameLayer(GptqSolver.quantize(w, h, g128), backend().quantize(w, h, g128, null),
                    l[0] + " 4-bit g128 natural");
            GptqSolver.Options minPivot = g128.withOrder(ColumnOrder.MIN_PIVOT).withClip(false);
            assertSameLayer(GptqSolver.quantize(w, h, minPivot), backend().quantize(w, h, minPivot, null),
                    l[0] + " 4-bit g128 min-pivot no-clip");
        }
    }

    @Test
    void solverHandlesDeadColumnsFixedGridsAndTheOtherMethods() {
        double[][] w = gaussian(20, 64, 0.05);
        double[][] h = correlatedHessian(200, 64);
        for (int j : new int[] {0, 17, 63}) { // inputs that never fired
            for (int i = 0; i < 64; i++) {
                h[i][j] = 0;
                h[j][i] = 0;
            }
        }
        GptqSolver.Options opt = GptqSolver.Options.defaults().withGrid(new QuantGrid.Spec(4, 16, true, false));
        assertSameLayer(GptqSolver.quantize(w, h, opt), backend().quantize(w, h, opt, null), "dead columns");
        QuantGrid fixed = QuantGrid.fit(gaussian(20, 64, 0.08), new QuantGrid.Spec(4, 32, false, false));
        assertSameLayer(GptqSolver.quantize(w, h, opt, fixed), backend().quantize(w, h, opt, fixed), "fixed grid");
        for (Method m : new Method[] {Method.RTN, Method.BABAI}) {
            GptqSolver.Options o = opt.withMethod(m);
            assertSameLayer(GptqSolver.quantize(w, h, o), backend().quantize(w, h, o, null), m.toString());
        }
    }

    // ---- GEMV -----------------------------------------------------------------------------------------------------

    /** Random codes and grid packed as a checkpoint; returns the layer and, by reference, nothing else. */
    private QuantizedLayer randomCodes(int bits, int gs, int in, int out) {
        int groups = in / gs;
        int[][] codes = new int[out][in];
        double[][] scale = new double[out][groups];
        double[][] zero = new double[out][groups];
        for (int o = 0; o < out; o++) {
            for (int i = 0; i < in; i++) {
                codes[o][i] = rnd.nextInt(1 << bits);
            }
            for (int g = 0; g < groups; g++) {
                scale[o][g] = Half.round((float) (0.01 * (1 + rnd.nextDouble())));
                zero[o][g] = 1 + rnd.nextInt((1 << bits) - 1);
            }
        }
        return new QuantizedLayer(codes, QuantGrid.of(bits, gs, in, scale, zero), null, null, null);
    }

    @Test
    void gptqGemvEqualsDequantizeThenMultiply() {
        for (int bits : new int[] {4, 2, 8}) {
            int in = 1536; // two GEMV slices, the second partial
            int out = 96;
            QuantizedLayer q = randomCodes(bits, 128, in, out);
            PackedGptq p = PackedGptq.of(q, bits == 4);
            int[][] qw = new int[in * bits / 32][out];
            for (int r = 0; r < qw.length; r++) {
                System.arraycopy(p.qweight(), r * out, qw[r], 0, out);
            }
            int[][] codes = GptqPacking.unpackQweight(qw, bits, in);
            for (int batch : new int[] {1, 3, 8}) {
                float[] x = gaussianFloats(batch * in);
                float[] y;
                try (ServingKernels.Linear lin = ServingKernels.of(backend()).gptqLinear(p)) {
                    y = lin.apply(x, batch);
                }
                float[] ref = new float[batch * out];
                for (int b = 0; b < batch; b++) {
                    for (int o = 0; o < out; o++) {
                        double s = 0;
                        for (int i = 0; i < in; i++) {
                            s += x[b * in + i] * QuantGrid.dequantize(codes[o][i], q.grid().scale(o, i),
                                    q.grid().zero(o, i));
                        }
                        ref[b * out + o] = (float) s;
                    }
                }
                double err = Parity.gemv(ref, y, Parity.absScale(p, x, batch));
                assertTrue(err <= Parity.MAX_GEMV_REL, "seed " + seed + " bits " + bits + " batch " + batch + ": "
                        + err);
            }
        }
    }

    @Test
    void ssqrGemvOnARealLayerEqualsDequantizeThenMultiply() {
        double[][] w = realWeights("o_proj");
        double[][] h = new HessianAccumulator(w[0].length).add(realActivations("o_proj_in")).hessian();
        SsqrLayer l = Ssqr.quantize(w, h, Ssqr.Options.of(4, 128, 0.01, GptqSolver.Options.defaults())).layer();
        assertTrue(l.outliers() > 0, "the real layer should have outliers at 1%");
        int[][] lattice = l.latticeCodes();
        int in = l.cols();
        int out = l.rows();
        for (int batch : new int[] {1, 8}) {
            float[] x = gaussianFloats(batch * in);
            float[] y;
            try (ServingKernels.Linear lin = ServingKernels.of(backend()).ssqrLinear(l)) {
                y = lin.apply(x, batch);
            }
            float[] ref = new float[batch * out];
            for (int b = 0; b < batch; b++) {
                for (int o = 0; o < out; o++) {
                    double s = 0;
                    for (int j = 0; j < in; j++) {
                        int g = o * l.groups() + j / l.groupSize();
                        s += x[b * in + j] * ((double) Half.toFloat(l.scale()[g]) * (lattice[o][j] - l.zero()[g]));
                    }
                    ref[b * out + o] = (float) s;
                }
            }
            double err = Parity.gemv(ref, y, Parity.absScale(l, x, batch));
            assertTrue(err <= Parity.MAX_GEMV_REL, "seed " + seed + " batch " + batch + ": " + err);
        }
    }
}
