package org.babaiquant.nonclip;

import org.babaiquant.core.Half;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.QuantGrid;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SsqrTest {
    private static final int ROWS = 96;
    private static final int COLS = 320;

    /**
     * The multiplier search ends with the outlier density in [(1 − 0.05)·r, r], next to a smaller multiplier whose
     * density exceeds r; there is no clipping, so the Babai bound holds in every row; the file holds exactly the
     * lattice point; and the stored scales are fp16(m·s) of the MSE grid, one m for the whole matrix.
     */
    @Test
    void searchMeetsTheOutlierRateAndTheLatticeIsStoredExactly() {
        Random rnd = new Random(53);
        double[][] w = NonClipFixtures.weights(rnd, ROWS, COLS);
        double[][] h = NonClipFixtures.hessian(rnd, 600, COLS);
        double n = ROWS * COLS;
        for (int bits : new int[] {2, 3, 4}) {
            QuantGrid mse = QuantGrid.fit(w, new QuantGrid.Spec(bits, 64, false, true));
            for (double rate : new double[] {0.01, 0.03}) {
                Ssqr.Result r = Ssqr.quantize(w, h, Ssqr.Options.of(bits, 64, rate, GptqSolver.Options.defaults()));
                String where = bits + " bits, rate " + rate;
                assertTrue(r.inBand(), where + ": density " + r.density());
                assertTrue(r.density() <= rate && r.density() >= (1 - Ssqr.DEFAULT_RELATIVE_BAND) * rate,
                        where + ": density " + r.density());
                if (!Double.isNaN(r.multiplierBelow())) {
                    assertTrue(r.multiplierBelow() < r.multiplier() && r.densityBelow() > rate, where);
                }
                assertTrue(r.evaluations() <= 15, where + ": " + r.evaluations() + " evaluations");

                LayerReport rep = r.lattice().report();
                assertEquals(0, rep.clipped(), where);
                assertEquals(0, rep.boundViolations(), where);
                assertEquals(8.0 * r.bytes().length / n, r.bitsPerWeight(), 0, where);

                SsqrLayer back = SsqrFormat.read(r.bytes());
                assertArrayEquals(NonClipFixtures.toFloat(r.lattice().dequant()), back.dequantize(), where);
                assertArrayEquals(r.lattice().codes(), back.latticeCodes(), where);
                for (int row = 0; row < ROWS; row++) {
                    for (int g = 0; g < back.groups(); g++) {
                        assertEquals(Half.fromFloat((float) (r.multiplier() * mse.scale[row][g])),
                                back.scale()[row * back.groups() + g], where + " scale " + row + "," + g);
                        assertEquals((int) mse.zero[row][g], back.zero()[row * back.groups() + g]);
                    }
                }
            }
        }
    }

    /** A higher target rate lets the search shrink the scales further, which lowers the Babai bound. */
    @Test
    void moreOutliersMeanSmallerScalesAndASmallerBound() {
        Random rnd = new Random(59);
        double[][] w = NonClipFixtures.weights(rnd, ROWS, COLS);
        double[][] h = NonClipFixtures.hessian(rnd, 600, COLS);
        double prevM = Double.POSITIVE_INFINITY;
        double prevBound = Double.POSITIVE_INFINITY;
        for (double rate : new double[] {0.002, 0.01, 0.05}) {
            Ssqr.Result r = Ssqr.quantize(w, h, Ssqr.Options.of(3, 128, rate, GptqSolver.Options.defaults()));
            assertTrue(r.multiplier() < prevM, "rate " + rate);
            assertTrue(r.lattice().report().bound() < prevBound, "rate " + rate);
            prevM = r.multiplier();
            prevBound = r.lattice().report().bound();
        }
    }
}
