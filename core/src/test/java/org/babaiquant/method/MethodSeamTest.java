package org.babaiquant.method;

import org.babaiquant.BadInputException;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqPacking;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.Half;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.core.TestInputs;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The method seam: registry, spec validation, the scale policy, the one-layer path's guarantees. */
class MethodSeamTest {
    private static final int ROWS = 24;
    private static final int COLS = 64;

    private static double[][] weights(Random rnd) {
        double[][] w = new double[ROWS][COLS];
        for (double[] r : w) {
            for (int j = 0; j < COLS; j++) {
                r[j] = 0.05 * rnd.nextGaussian();
            }
        }
        return w;
    }

    private static MethodSpec spec(String method, int bits) {
        return MethodSpec.grid(method, new QuantGrid.Spec(bits, 32, false, false), ColumnOrder.ACT_ORDER, true, 0.01);
    }

    @Test
    void registryHoldsTheSixMethodsAndRefusesUnknownNamesListingThem() {
        assertEquals(List.of("gptq", "babai", "rtn", "ssqr", "hptq", "hrtn"), Methods.names());
        assertEquals(List.of("gptq", "babai", "rtn"), Methods.gridMethods());
        assertEquals("hptq", Methods.get("HPTQ").name());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Methods.get("huffman"));
        assertTrue(e.getMessage().endsWith("gptq, babai, rtn, ssqr, hptq or hrtn"), e.getMessage());
        assertInstanceOf(EncodedMethod.class, Methods.get("ssqr"));
        assertThrows(IllegalArgumentException.class, () -> Methods.encoded("gptq"));
    }

    @Test
    void specIsValidatedOnceWhenBuilt() {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> spec("hptq", 4)).getMessage().contains("--target-bits"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> spec("gptq", 4).withTargetBits(0.9).withMethod("hrtn"))
                .getMessage().contains("at least one bit"));
        assertThrows(IllegalArgumentException.class, () -> MethodSpec.grid("ssqr", new QuantGrid.Spec(4, 32, true, false),
                ColumnOrder.NATURAL, false, 0.01));
        assertThrows(IllegalArgumentException.class, () -> spec("ssqr", 4).withOutlierRate(1.5));
        assertThrows(IllegalArgumentException.class, () -> spec("gptq", 4).withTargetBits(Double.NaN));
        assertThrows(IllegalArgumentException.class, () -> MethodSpec.grid("gptq", new QuantGrid.Spec(4, 32, false, false),
                ColumnOrder.NATURAL, true, -1));
        // codes of the encoded methods are never clipped, whatever was asked
        assertFalse(spec("ssqr", 3).clip());
        assertTrue(spec("gptq", 3).clip());
    }

    @Test
    void storedGridIsTheLiveWeightsGridWithFp16Scales() {
        Random rnd = new Random(7);
        double[][] w = weights(rnd);
        double[][] h = TestInputs.hessian(rnd, 200, COLS);
        for (int j : new int[] {3, 40}) { // two dead inputs holding the largest weights: they must not widen the range
            h[j][j] = 0;
            for (int k = 0; k < COLS; k++) {
                h[j][k] = 0;
                h[k][j] = 0;
            }
            for (double[] r : w) {
                r[j] = 9.0;
            }
        }
        QuantGrid.Spec gs = new QuantGrid.Spec(4, 32, false, false);
        QuantGrid g = LatticeMethod.storedGrid("W", w, h, gs);
        double[][] live = new double[ROWS][];
        for (int r = 0; r < ROWS; r++) {
            live[r] = w[r].clone();
            live[r][3] = 0;
            live[r][40] = 0;
        }
        QuantGrid ref = QuantGrid.fit(live, gs);
        for (int r = 0; r < ROWS; r++) {
            for (int k = 0; k < g.groups(); k++) {
                assertEquals(Half.round((float) ref.scale[r][k]), g.scale[r][k], 0.0, "fp16 of the live grid's scale");
                assertEquals(ref.zero[r][k], g.zero[r][k], 0.0);
            }
        }
        // and that grid is what the grid methods solve on and store
        QuantResult q = LayerQuantizer.quantize("W", w, h, -1, spec("gptq", 4), QuantBackend.cpu());
        QuantizedLayer direct = GptqSolver.quantize(w, h, spec("gptq", 4).solverOptions(Method.GPTQ), g);
        for (int r = 0; r < ROWS; r++) {
            assertArrayEquals(direct.codes()[r], q.lattice().codes()[r]);
            for (int j = 0; j < COLS; j++) {
                double s = g.scale(r, j);
                assertEquals(s * (q.lattice().codes()[r][j] - g.zero(r, j)), q.dequant()[r][j], 0.0);
            }
        }
    }

    @Test
    void scalesBeyondFp16AreBadInputNamingTensorRowAndGroup() {
        Random rnd = new Random(8);
        double[][] w = weights(rnd);
        double[][] h = TestInputs.hessian(rnd, 200, COLS);
        w[5][33] = 1e7; // 4-bit scale ~ 6.7e5 > 65504
        BadInputException e = assertThrows(BadInputException.class,
                () -> LayerQuantizer.quantize("layers.0.q_proj", w, h, -1, spec("gptq", 4), QuantBackend.cpu()));
        assertTrue(e.getMessage().startsWith("layers.0.q_proj: ") && e.getMessage().contains("row 5, group 1")
                && e.getMessage().contains("float16"), e.getMessage());
        w[5][33] = 1e300;
        for (String m : new String[] {"gptq", "babai", "rtn"}) {
            assertThrows(BadInputException.class, () -> LayerQuantizer.quantize("W", w, h, -1, spec(m, 4), QuantBackend.cpu()), m);
        }
        assertThrows(BadInputException.class, () -> LayerQuantizer.quantize("W", w, h, -1, spec("ssqr", 3), QuantBackend.cpu()));
        assertThrows(BadInputException.class, () -> LayerQuantizer.quantize("W", w, h, -1, spec("gptq", 4).withTargetBits(3.5)
                .withMethod("hptq"), QuantBackend.cpu()));
    }

    @Test
    void emptyOrNonFiniteInputsAreBadInputAndEvaluationNeedsFiniteRows() {
        Random rnd = new Random(9);
        double[][] w = weights(rnd);
        double[][] h = TestInputs.hessian(rnd, 200, COLS);
        assertThrows(BadInputException.class, () -> LayerQuantizer.quantize("W", new double[0][], h, -1, spec("gptq", 4),
                QuantBackend.cpu()));
        QuantResult q = LayerQuantizer.quantize("W", w, h, -1, spec("gptq", 4), QuantBackend.cpu());
        double[][] xe = TestInputs.activations(rnd, 50, COLS);
        LayerQuantizer.evaluate("W", q, w, xe, "Xe");
        assertEquals(GptqSolver.relativeOutputError(xe, w, q.dequant()), q.report().evalRelError, 0.0);
        assertThrows(BadInputException.class, () -> LayerQuantizer.evaluate("W", q, w, new double[0][], "Xe"));
        xe[7][2] = Double.NaN;
        BadInputException nan = assertThrows(BadInputException.class, () -> LayerQuantizer.evaluate("W", q, w, xe, "Xe.npy"));
        assertTrue(nan.getMessage().contains("Xe.npy") && nan.getMessage().contains("[7, 2]"), nan.getMessage());
        assertThrows(BadInputException.class, () -> LayerQuantizer.evaluate("W", q, w, new double[][] {new double[COLS + 1]}, "Xe"));
    }

    @Test
    void encodedResultsMeasureTheirBytesAndDecodeToTheirDequant() {
        Random rnd = new Random(10);
        double[][] w = weights(rnd);
        double[][] h = TestInputs.hessian(rnd, 200, COLS);
        for (MethodSpec s : new MethodSpec[] {spec("ssqr", 3).withOutlierRate(0.02), spec("gptq", 3).withTargetBits(3.5)
                .withMethod("hptq"), spec("gptq", 3).withTargetBits(3.5).withMethod("hrtn")}) {
            QuantResult q = LayerQuantizer.quantize("W", w, h, 100, s, QuantBackend.cpu());
            QuantResult.Encoded e = assertInstanceOf(QuantResult.Encoded.class, q);
            assertEquals(8.0 * e.bytes().length / (ROWS * COLS), q.bitsPerWeight(), 0.0, s.method());
            assertEquals(q.bitsPerWeight(), q.report().bitsPerWeight, 0.0);
            assertEquals(100, q.report().tokens);
            float[] decoded = Methods.encoded(s.method()).decode(e.bytes());
            for (int r = 0; r < ROWS; r++) {
                for (int j = 0; j < COLS; j++) {
                    assertEquals(decoded[r * COLS + j], q.dequant()[r][j], 0.0);
                }
            }
            assertEquals(s.method(), q.summary().get("method"));
        }
    }

    @Test
    void gptqPackingOwnsPackabilityAndCheckpointBits() {
        int[][] codes = new int[4][32];
        for (int[] r : codes) {
            java.util.Arrays.fill(r, 7);
        }
        assertTrue(GptqPacking.packable(codes, 32, 4));
        assertTrue(GptqPacking.packable(codes, 32, 3));
        assertFalse(GptqPacking.packable(codes, 32, 5), "no 5-bit packing");
        assertFalse(GptqPacking.packable(codes, 32, 2), "7 is outside 0..3");
        assertFalse(GptqPacking.packable(new int[4][12], 12, 4), "12 columns are not a whole number of 4-bit words");
        codes[2][5] = -1;
        assertFalse(GptqPacking.packable(codes, 32, 4), "a no-clip code below 0");
        assertEquals(null, GptqPacking.checkpointProblem(384, 1536, 3));
        assertTrue(GptqPacking.checkpointProblem(384, 100, 4).contains("multiples of 8"));
        // 4 bits, g128, 384x384 act-order: codes 4 + scales 16/128 + zeros 4/128 + g_idx 32/384 (hand count)
        assertEquals(4 + (16 + 4) / 128.0 + 32.0 / 384, GptqPacking.bitsPerWeight(384, 384, 4, 3, true), 1e-15);
        QuantGrid g = QuantGrid.of(3, 128, 384, new double[384][3], new double[384][3]);
        assertEquals(GptqSolver.checkpointBitsPerWeight(384, 384, g, false), GptqPacking.bitsPerWeight(384, 384, 3, 3, false), 0.0);
    }
}
