package org.babaiquant.core;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class QuantGridTest {
    @Test
    void asymmetricMinMaxByHand() {
        // 2 bits: range [-1, 2] → scale 1, zero 1; 0.5 rounds half to even (0) → code 1
        QuantGrid g = QuantGrid.fit(new double[][] {{-1, 0.5, 2}}, new QuantGrid.Spec(2, -1, false, false));
        assertEquals(1.0, g.scale[0][0], 0);
        assertEquals(1.0, g.zero[0][0], 0);
        assertEquals(0, QuantGrid.quantize(-1, 1, 1, 3));
        assertEquals(1, QuantGrid.quantize(0.5, 1, 1, 3));
        assertEquals(3, QuantGrid.quantize(1.5, 1, 1, 3)); // rint(1.5) = 2 (half to even), + zero 1
        assertEquals(2, QuantGrid.quantize(0.5 + 1e-12, 1, 1, 3));
        assertEquals(0, QuantGrid.quantize(-7, 1, 1, 3)); // clamped
        assertEquals(-6, QuantGrid.quantizeUnclipped(-7, 1, 1)); // no-clip keeps the lattice point
    }

    @Test
    void symmetricGridAndZeroInsideRange() {
        // 4 bits sym: xmax = max(|−1|, 3) = 3, xmin = −3, scale 6/15, zero (15+1)/2 = 8
        QuantGrid g = QuantGrid.fit(new double[][] {{-1, 3}}, new QuantGrid.Spec(4, -1, true, false));
        assertEquals(0.4, g.scale[0][0], 1e-15);
        assertEquals(8.0, g.zero[0][0], 0);
        // all-positive row: 0 is still inside the range (xmin = 0)
        QuantGrid p = QuantGrid.fit(new double[][] {{1, 2, 3}}, new QuantGrid.Spec(3, -1, false, false));
        assertEquals(3.0 / 7, p.scale[0][0], 1e-15);
        assertEquals(0.0, p.zero[0][0], 0);
        // all-zero row: the reference's [-1, 1] fallback, not a zero scale
        QuantGrid z = QuantGrid.fit(new double[][] {{0, 0}}, new QuantGrid.Spec(2, -1, false, false));
        assertEquals(2.0 / 3, z.scale[0][0], 1e-15);
    }

    @Test
    void groupsUseTheirOwnRange() {
        double[][] w = {{-1, 1, -10, 10, 0.5}};
        QuantGrid g = QuantGrid.fit(w, new QuantGrid.Spec(8, 2, true, false));
        assertEquals(3, g.groups());
        assertEquals(2.0 / 255, g.scale(0, 1), 1e-15);
        assertEquals(20.0 / 255, g.scale(0, 2), 1e-15);
        assertEquals(1.0 / 255, g.scale(0, 4), 1e-15);
    }

    @Test
    void mseSearchNeverIncreasesTheError() {
        Random rnd = new Random(5);
        double[][] w = Fixtures.gaussian(rnd, 30, 256, 1);
        w[3][17] = 12; // an outlier makes min-max wasteful
        QuantGrid mm = QuantGrid.fit(w, new QuantGrid.Spec(3, 64, false, false));
        QuantGrid mse = QuantGrid.fit(w, new QuantGrid.Spec(3, 64, false, true));
        double eMm = 0;
        double eMse = 0;
        for (int r = 0; r < 30; r++) {
            for (int j = 0; j < 256; j++) {
                eMm += Math.pow(Math.abs(rt(w[r][j], mm, r, j) - w[r][j]), 2.4);
                eMse += Math.pow(Math.abs(rt(w[r][j], mse, r, j) - w[r][j]), 2.4);
            }
        }
        assertTrue(eMse <= eMm, eMse + " > " + eMm);
        assertTrue(mse.scale[3][0] < mm.scale[3][0], "the outlier's group shrinks");
    }

    private static double rt(double x, QuantGrid g, int r, int j) {
        return QuantGrid.dequantize(QuantGrid.quantize(x, g.scale(r, j), g.zero(r, j), g.maxq), g.scale(r, j), g.zero(r, j));
    }

    @Test
    void specRejectsNonsense() {
        assertThrows(IllegalArgumentException.class, () -> new QuantGrid.Spec(1, -1, false, false));
        assertThrows(IllegalArgumentException.class, () -> new QuantGrid.Spec(9, -1, false, false));
        assertThrows(IllegalArgumentException.class, () -> new QuantGrid.Spec(4, 0, false, false));
    }
}
