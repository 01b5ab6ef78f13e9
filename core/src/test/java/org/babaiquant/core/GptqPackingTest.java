package org.babaiquant.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;

import org.junit.jupiter.api.Test;

class GptqPackingTest {

    private static final int[] BITS = {2, 3, 4, 8};

    @Test
    void qweightRoundTripsRandomCodes() {
        Random rnd = new Random(20240611);
        for (int bits : BITS) {
            int out = 7;
            int in = 96; // a multiple of 32, so every bit width packs it
            int[][] codes = randomCodes(rnd, out, in, bits);
            int[][] q = GptqPacking.packQweight(codes, bits);
            assertEquals(in * bits / 32, q.length, "bits " + bits);
            assertEquals(out, q[0].length);
            assertMatrixEquals(codes, GptqPacking.unpackQweight(q, bits, in));
        }
    }

    @Test
    void qzerosRoundTripRandomZerosV1AndV2() {
        Random rnd = new Random(5);
        for (int bits : BITS) {
            int groups = 3;
            int out = 64;
            int[][] zeros = randomCodes(rnd, groups, out, bits);
            for (boolean v1 : new boolean[]{false, true}) {
                int[][] q = GptqPacking.packQzeros(zeros, bits, v1);
                assertEquals(groups, q.length);
                assertEquals(out * bits / 32, q[0].length);
                assertMatrixEquals(zeros, GptqPacking.unpackQzeros(q, bits, out, v1));
            }
        }
    }

    /** The example in the class comment: one output column, 4-bit codes 1..8 from the least significant nibble. */
    @Test
    void fourBitHandExample() {
        int[][] codes = {{1, 2, 3, 4, 5, 6, 7, 8}};
        assertArrayEquals(new int[][]{{0x87654321}}, GptqPacking.packQweight(codes, 4));
    }

    @Test
    void twoAndEightBitHandExamples() {
        assertArrayEquals(new int[][]{{0x44332211}}, GptqPacking.packQweight(new int[][]{{0x11, 0x22, 0x33, 0x44}}, 8));
        int[][] two = {{1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3}};
        assertArrayEquals(new int[][]{{0xc0000039}}, GptqPacking.packQweight(two, 2));
    }

    /** qweight is [in*bits/32, out]: output columns stay columns, inputs go down the rows. */
    @Test
    void qweightIsTransposed() {
        int[][] codes = new int[2][16];
        codes[1][8] = 0xf; // output 1, input 8: second word, lowest nibble
        int[][] q = GptqPacking.packQweight(codes, 4);
        assertArrayEquals(new int[][]{{0, 0}, {0, 0xf}}, q);
    }

    @Test
    void threeBitElementsCrossWordBoundaries() {
        int[][] codes = new int[1][32];
        codes[0][10] = 0b101; // bits 30..32: bit 30 of word 0, bit 0 of word 1
        codes[0][21] = 0b011; // bits 63..65: bit 31 of word 1, bit 0 of word 2
        codes[0][31] = 0b100; // bits 93..95: bit 31 of word 2
        int[][] q = GptqPacking.packQweight(codes, 3);
        assertArrayEquals(new int[][]{{0x40000000}, {0x80000001}, {0x80000001}}, q);
    }

    /** Cross-check 3 bits against AutoGPTQ's pack loop (10 values, a split value, 10, a split value, 10). */
    @Test
    void threeBitMatchesAutoGptqPackLoop() {
        Random rnd = new Random(3);
        int out = 5;
        int in = 64;
        int[][] codes = randomCodes(rnd, out, in, 3);
        assertMatrixEquals(autoGptqPack3(codes), GptqPacking.packQweight(codes, 3));
    }

    @Test
    void v1ZerosStoreZeroMinusOne() {
        int[][] zeros = new int[1][8];
        java.util.Arrays.fill(zeros[0], 8);
        assertArrayEquals(new int[][]{{0x77777777}}, GptqPacking.packQzeros(zeros, 4, true));
        assertArrayEquals(new int[][]{{0x88888888}}, GptqPacking.packQzeros(zeros, 4, false));

        zeros[0] = new int[]{0, 1, 2, 3, 4, 5, 6, 7};
        int[][] v1 = GptqPacking.packQzeros(zeros, 4, true);
        assertEquals(0x6543210f, v1[0][0]); // zero 0 wraps to 15 within the 4-bit field
        assertMatrixEquals(zeros, GptqPacking.unpackQzeros(v1, 4, 8, true));
    }

    @Test
    void gIdxIsInputOverGroupSize() {
        assertArrayEquals(new int[]{0, 0, 0, 1, 1, 1, 2}, GptqPacking.gIdx(7, 3));
        assertArrayEquals(new int[5], GptqPacking.gIdx(5, -1));
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.gIdx(5, 0));
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.gIdx(5, -2));
    }

    @Test
    void wrongShapesAndValuesThrow() {
        IllegalArgumentException in = assertThrows(IllegalArgumentException.class,
                () -> GptqPacking.packQweight(new int[2][12], 4));
        assertTrue(in.getMessage().contains("[2][12]") && in.getMessage().contains("multiple of 8"), in.getMessage());
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQweight(new int[1][16], 3));
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQweight(new int[1][32], 5));
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQzeros(new int[1][4], 4, false));
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQweight(new int[][]{new int[8],
                new int[16]}, 4));

        int[][] codes = new int[2][8];
        codes[1][3] = 16;
        IllegalArgumentException range = assertThrows(IllegalArgumentException.class,
                () -> GptqPacking.packQweight(codes, 4));
        assertTrue(range.getMessage().contains("codes[1][3] = 16"), range.getMessage());
        codes[1][3] = -1;
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQweight(codes, 4));
        int[][] zeros = new int[1][16];
        zeros[0][2] = 4;
        IllegalArgumentException z = assertThrows(IllegalArgumentException.class,
                () -> GptqPacking.packQzeros(zeros, 2, true));
        assertTrue(z.getMessage().contains("zeros[0][2] = 4"), z.getMessage());

        int[][] q = GptqPacking.packQweight(new int[3][16], 4);
        IllegalArgumentException un = assertThrows(IllegalArgumentException.class,
                () -> GptqPacking.unpackQweight(q, 4, 32));
        assertTrue(un.getMessage().contains("2 rows"), un.getMessage());
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.unpackQzeros(new int[1][1], 4, 16, false));
    }

    // ------------------------------------------------------------------------------------------------ helpers

    private static int[][] randomCodes(Random rnd, int rows, int cols, int bits) {
        int[][] m = new int[rows][cols];
        for (int[] row : m) {
            for (int j = 0; j < cols; j++) {
                row[j] = rnd.nextInt(1 << bits);
            }
        }
        return m;
    }

    /**
     * AutoGPTQ's 3-bit procedure written out independently of the bit-stream formula: per 32 inputs, word 0 takes
     * ten values and the low 2 bits of the 11th, word 1 its high bit, ten values and the low bit of the 22nd, word 2
     * its high 2 bits and ten values.
     */
    private static int[][] autoGptqPack3(int[][] codes) {
        int out = codes.length;
        int in = codes[0].length;
        int[][] q = new int[in / 32 * 3][out];
        for (int o = 0; o < out; o++) {
            int i = 0;
            for (int row = 0; row < q.length; row += 3) {
                for (int j = 0; j < 10; j++) {
                    q[row][o] |= codes[o][i + j] << (3 * j);
                }
                i += 10;
                q[row][o] |= codes[o][i] << 30;
                q[row + 1][o] |= (codes[o][i] >> 2) & 1;
                i++;
                for (int j = 0; j < 10; j++) {
                    q[row + 1][o] |= codes[o][i + j] << (3 * j + 1);
                }
                i += 10;
                q[row + 1][o] |= codes[o][i] << 31;
                q[row + 2][o] |= (codes[o][i] >> 1) & 3;
                i++;
                for (int j = 0; j < 10; j++) {
                    q[row + 2][o] |= codes[o][i + j] << (3 * j + 2);
                }
                i += 10;
            }
        }
        return q;
    }

    private static void assertMatrixEquals(int[][] expected, int[][] actual) {
        assertEquals(expected.length, actual.length);
        for (int i = 0; i < expected.length; i++) {
            assertArrayEquals(expected[i], actual[i], "row " + i);
        }
    }
}
