package org.babaiquant.nonclip;

import org.babaiquant.BadInputException;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.LayerReport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class HptqTest {
    private static final int ROWS = 48;
    private static final int COLS = 160;

    /**
     * The scale search ends with bits per weight in [T − band, T] (band 0.005: see {@link Hptq}), the size is the
     * bytes written, and the next smaller scale tried misses T.
     */
    @ParameterizedTest
    @EnumSource(Hptq.Kind.class)
    void searchMeetsTheTargetWithinTheBandAndTheBytesRoundTrip(Hptq.Kind kind) {
        Random rnd = new Random(41);
        double[][] w = NonClipFixtures.weights(rnd, ROWS, COLS);
        double[][] h = NonClipFixtures.hessian(rnd, 400, COLS);
        for (double target : new double[] {2.125, 3.125, 4.125, 6.0}) {
            Hptq.Result r = Hptq.quantize(w, h, Hptq.Options.of(kind, target, GptqSolver.Options.defaults()));
            String where = kind + " target " + target;
            assertEquals(8.0 * r.bytes().length / (ROWS * COLS), r.bitsPerWeight(), 0, where);
            assertEquals(r.bitsPerWeight(), r.lattice().report().bitsPerWeight, 0, where);
            assertTrue(r.inBand(), where);
            assertTrue(r.bitsPerWeight() <= target && r.bitsPerWeight() >= target - Hptq.DEFAULT_BAND,
                    where + ": " + r.bitsPerWeight());
            assertTrue(r.evaluations() <= 12, where + ": " + r.evaluations() + " evaluations");
            if (!Double.isNaN(r.scaleBelow())) {
                assertTrue(r.scaleBelow() < r.layer().scale() && r.bitsBelow() > target, where);
            }
            // the file holds exactly the lattice point the solver found
            assertArrayEquals(NonClipFixtures.toFloat(r.lattice().dequant()), HptqFormat.dequantize(r.bytes()), where);
            assertArrayEquals(r.lattice().codes(), HptqFormat.read(r.bytes()).codeMatrix(), where);
        }
    }

    /**
     * No clipping, one scale s: every row's Babai bound is ¼·s²·Σ_k D_k = ¼·s²·tr(D), and GPTQ's loss stays under it
     * in every row (Chen et al., Theorem: the bound holds when nothing is clipped).
     */
    @Test
    void hptqHasNoClippingAndTheBabaiBoundHoldsInEveryRow() {
        Random rnd = new Random(43);
        double[][] w = NonClipFixtures.weights(rnd, ROWS, COLS);
        double[][] h = NonClipFixtures.hessian(rnd, 400, COLS);
        for (double target : new double[] {2.125, 3.125, 4.125}) {
            Hptq.Result r = Hptq.quantize(w, h, Hptq.Options.of(Hptq.Kind.HPTQ, target,
                    GptqSolver.Options.defaults()));
            LayerReport rep = r.lattice().report();
            assertEquals(0, rep.clipped());
            assertEquals(0, rep.boundViolations(), "target " + target);
            double s = r.layer().scale();
            for (int row = 0; row < ROWS; row++) {
                assertEquals(0.25 * s * s * rep.traceD, rep.rowBound[row], 1e-9 * rep.rowBound[row]);
                assertTrue(rep.rowLoss[row] <= rep.rowBound[row], "row " + row);
            }
        }
    }

    @Test
    void targetsAHuffmanCodeCannotMeetAreClearErrors() {
        Random rnd = new Random(47);
        double[][] w = NonClipFixtures.weights(rnd, ROWS, COLS);
        double[][] h = NonClipFixtures.hessian(rnd, 400, COLS);
        IllegalArgumentException floor = assertThrows(IllegalArgumentException.class,
                () -> Hptq.Options.of(Hptq.Kind.HPTQ, 1.0, GptqSolver.Options.defaults()));
        assertTrue(floor.getMessage().contains("at least one bit"), floor.getMessage());
        // 1 bit per weight plus a 37-byte header over 7680 weights is 1.039: 1.02 cannot be met at any scale
        BadInputException e = assertThrows(BadInputException.class, () -> Hptq.quantize(w, h,
                Hptq.Options.of(Hptq.Kind.HRTN, 1.02, GptqSolver.Options.defaults())));
        assertTrue(e.getMessage().contains("not met"), e.getMessage());
    }
}
