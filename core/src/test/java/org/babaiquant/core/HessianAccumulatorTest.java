package org.babaiquant.core;

import org.babaiquant.BadInputException;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class HessianAccumulatorTest {
    @Test
    void sumsXtXInFloat64AndCountsTokens() {
        float[][] x = {{1, 2}, {3, -1}, {0.5f, 0}};
        HessianAccumulator acc = new HessianAccumulator(2).add(x);
        assertEquals(3, acc.tokens());
        double[][] h = acc.hessian();
        assertArrayEquals(new double[] {1 + 9 + 0.25, 2 - 3}, h[0], 0);
        assertArrayEquals(new double[] {-1, 4 + 1}, h[1], 0);
        double[][] mean = acc.mean();
        assertEquals(10.25 / 3, mean[0][0], 1e-15);
    }

    @Test
    void mergedPartialsEqualTheWholeAndTilesDoNotMatter() {
        Random rnd = new Random(3);
        double[][] x = Fixtures.activations(rnd, 1000, 70);
        HessianAccumulator whole = new HessianAccumulator(70).add(x);
        HessianAccumulator a = new HessianAccumulator(70).add(Arrays.copyOfRange(x, 0, 333));
        HessianAccumulator b = new HessianAccumulator(70).add(Arrays.copyOfRange(x, 333, 1000));
        a.merge(b);
        assertEquals(1000, a.tokens());
        double[][] hw = whole.hessian();
        double[][] hm = a.hessian();
        for (int i = 0; i < 70; i++) {
            for (int j = 0; j < 70; j++) {
                double direct = 0;
                for (double[] row : x) {
                    direct += row[i] * row[j];
                }
                assertEquals(direct, hw[i][j], 1e-11 * Math.abs(hw[i][i]));
                assertEquals(hw[i][j], hm[i][j], 1e-11 * Math.abs(hw[i][i]));
                assertEquals(hw[i][j], hw[j][i], 0);
            }
        }
    }

    @Test
    void codecRoundTripsBitExactly() {
        HessianAccumulator acc = new HessianAccumulator(33).add(Fixtures.activations(new Random(1), 50, 33));
        byte[] bytes = acc.toBytes();
        assertEquals(20 + 8 * 33 * 34 / 2, bytes.length);
        HessianAccumulator back = HessianAccumulator.fromBytes(bytes);
        assertEquals(acc.tokens(), back.tokens());
        assertTrue(Arrays.deepEquals(acc.hessian(), back.hessian()));
        assertArrayEquals(bytes, back.toBytes());
    }

    @Test
    void codecRejectsWrongMagicVersionAndLength() {
        byte[] good = new HessianAccumulator(3).add(new double[][] {{1, 2, 3}}).toBytes();
        byte[] magic = good.clone();
        magic[0] = 'X';
        assertThrows(BadInputException.class, () -> HessianAccumulator.fromBytes(magic));
        byte[] version = good.clone();
        version[4] = 9;
        BadInputException e = assertThrows(BadInputException.class, () -> HessianAccumulator.fromBytes(version));
        assertTrue(e.getMessage().contains("version 9"), e.getMessage());
        assertThrows(BadInputException.class, () -> HessianAccumulator.fromBytes(Arrays.copyOf(good, good.length - 1)));
    }

    @Test
    void rejectsBadRowsAndBadMerges() {
        HessianAccumulator acc = new HessianAccumulator(2);
        assertThrows(BadInputException.class, () -> acc.add(new double[][] {{1, 2, 3}}));
        BadInputException nan = assertThrows(BadInputException.class, () -> acc.add(new float[][] {{1, Float.NaN}}));
        assertTrue(nan.getMessage().contains("row 0 column 1"), nan.getMessage());
        assertThrows(IllegalArgumentException.class, () -> acc.merge(acc));
        assertThrows(IllegalArgumentException.class, () -> acc.merge(new HessianAccumulator(3)));
    }
}
