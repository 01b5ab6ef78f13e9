package org.babaiquant.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.Random;

import org.junit.jupiter.api.Test;

class CompressedTensorsPackingTest {

    /** compressed-tensors' own pack_to_int32 example: signed int8 values [1, 2] → unsigned 129, 130 → one word 33409. */
    @Test
    void eightBitWordMatchesTheLibrarysDocumentedExample() {
        int[][] codes = {{1 + 128, 2 + 128, 128, 128}};
        int[][] p = CompressedTensorsPacking.weightPacked(codes, 8);
        assertEquals(1, p.length);
        assertEquals(1, p[0].length);
        // 0x80 80 82 81: the two padding-free zeros (signed 0 → 128) fill the high bytes
        assertEquals(0x80808281, p[0][0]);
        assertEquals(33409, p[0][0] & 0xFFFF);
    }

    /** Codes 1..8 in one row of 8 inputs: LSB first, 0x87654321; the row axis is not transposed. */
    @Test
    void fourBitRowPacksLsbFirstAlongTheInputAxis() {
        int[][] codes = {{1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 15}, {15, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}};
        int[][] p = CompressedTensorsPacking.weightPacked(codes, 4);
        assertEquals(2, p.length, "rows stay rows: [out, in·bits/32]");
        assertEquals(2, p[0].length);
        assertEquals(0x87654321, p[0][0]);
        assertEquals(0xF0000000, p[0][1]);
        assertEquals(0x0000000F, p[1][0]);
        assertEquals(0x11111111, p[1][1]);
    }

    /** Zero points are packed along the output axis: column g holds zeros[0..out-1][g]. */
    @Test
    void zeroPointsPackAlongTheOutputAxis() {
        int out = 8;
        int[][] zeros = new int[out][2];
        for (int r = 0; r < out; r++) {
            zeros[r][0] = r + 1;   // 1..8 down the rows of group 0
            zeros[r][1] = 15 - r;  // 15..8 down group 1
        }
        int[][] p = CompressedTensorsPacking.zeroPointPacked(zeros, 4);
        assertEquals(1, p.length, "[out·bits/32, groups]");
        assertEquals(2, p[0].length);
        assertEquals(0x87654321, p[0][0]);
        assertEquals(0x89ABCDEF, p[0][1]);
        assertArrayEquals(zeros, CompressedTensorsPacking.unpackZeroPoint(p, 4, out));
    }

    @Test
    void roundTripsRandomCodesAndZeros() {
        Random rnd = new Random(18);
        for (int bits : new int[] {2, 4, 8}) {
            int out = 32;
            int in = 64;
            int max = (1 << bits) - 1;
            int[][] codes = new int[out][in];
            int[][] zeros = new int[out][4];
            for (int r = 0; r < out; r++) {
                for (int j = 0; j < in; j++) {
                    codes[r][j] = rnd.nextInt(max + 1);
                }
                for (int g = 0; g < 4; g++) {
                    zeros[r][g] = rnd.nextInt(max + 1);
                }
            }
            int[][] p = CompressedTensorsPacking.weightPacked(codes, bits);
            assertEquals(out, p.length);
            assertEquals(in * bits / 32, p[0].length);
            assertArrayEquals(codes, CompressedTensorsPacking.unpackWeight(p, bits, in), "bits " + bits);
            int[][] z = CompressedTensorsPacking.zeroPointPacked(zeros, bits);
            assertEquals(out * bits / 32, z.length);
            assertArrayEquals(zeros, CompressedTensorsPacking.unpackZeroPoint(z, bits, out), "bits " + bits);
        }
    }

    @Test
    void symmetricMeansEveryZeroAtTheMidpoint() {
        int[][] zeros = {{8, 8}, {8, 8}};
        assertNull(CompressedTensorsPacking.firstAsymmetricZero(zeros, 4));
        zeros[1][1] = 7;
        assertArrayEquals(new int[] {1, 1}, CompressedTensorsPacking.firstAsymmetricZero(zeros, 4));
        assertEquals(128, CompressedTensorsPacking.symmetricZero(8));
    }

    @Test
    void refusesWidthsWhoseLayoutDiffersBetweenVersionsAndOutOfRangeCodes() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CompressedTensorsPacking.weightPacked(new int[32][32], 3));
        assertEquals(true, e.getMessage().contains("3-bit"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> CompressedTensorsPacking.weightPacked(new int[][] {{16, 0, 0, 0, 0, 0, 0, 0}}, 4));
        assertThrows(IllegalArgumentException.class, () -> CompressedTensorsPacking.weightPacked(new int[][] {{1, 2, 3}}, 4),
                "3 inputs do not fill a word");
    }
}
