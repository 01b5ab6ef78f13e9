package org.babaiquant.nonclip;

import org.babaiquant.core.Half;
import org.babaiquant.BadInputException;
import org.babaiquant.core.QuantGrid;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SsqrFormatTest {

    /** A random lattice on a random fp16 grid, with about {@code rate} of its codes outside [0, maxq]. */
    static SsqrLayer randomLayer(Random rnd, int rows, int cols, int bits, int groupSize, double rate, int farthest) {
        int gs = groupSize == -1 ? cols : Math.min(groupSize, cols);
        int groups = (cols + gs - 1) / gs;
        int maxq = (1 << bits) - 1;
        double[][] scale = new double[rows][groups];
        double[][] zero = new double[rows][groups];
        for (int r = 0; r < rows; r++) {
            for (int g = 0; g < groups; g++) {
                scale[r][g] = Half.round((float) (0.001 + rnd.nextDouble() * 0.1));
                zero[r][g] = rnd.nextInt(maxq + 1);
            }
        }
        int[][] codes = new int[rows][cols];
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < cols; j++) {
                codes[r][j] = rnd.nextDouble() < rate
                        ? (rnd.nextBoolean() ? -1 - rnd.nextInt(farthest) : maxq + 1 + rnd.nextInt(farthest))
                        : rnd.nextInt(maxq + 1);
            }
        }
        QuantGrid grid = QuantGrid.of(bits, gs, cols, scale, zero);
        SsqrLayer layer = SsqrLayer.fromLattice(codes, grid);
        assertArrayEquals(codes, layer.latticeCodes());
        return layer;
    }

    @Test
    void layersRoundTripExactly() {
        Random rnd = new Random(31);
        for (int trial = 0; trial < 60; trial++) {
            int bits = 2 + rnd.nextInt(7);
            int[] groupSizes = {-1, 1, 7, 32, 128};
            SsqrLayer layer = randomLayer(rnd, 1 + rnd.nextInt(30), 1 + rnd.nextInt(300), bits,
                    groupSizes[rnd.nextInt(groupSizes.length)], rnd.nextDouble() * 0.1,
                    trial % 10 == 0 ? 100_000 : 20);
            byte[] bytes = SsqrFormat.write(layer);
            SsqrLayer back = SsqrFormat.read(bytes);
            assertEquals(layer.bits(), back.bits());
            assertEquals(layer.groupSize(), back.groupSize());
            assertArrayEquals(layer.scale(), back.scale());
            assertArrayEquals(layer.zero(), back.zero());
            assertArrayEquals(layer.codes(), back.codes());
            assertArrayEquals(layer.rowPtr(), back.rowPtr());
            assertArrayEquals(layer.col(), back.col());
            assertArrayEquals(layer.offset(), back.offset());
            assertArrayEquals(layer.dequantize(), back.dequantize());
            int v = trial % 10 == 0 && layer.outliers() > 0 ? 4 : 2;
            assertEquals(SsqrFormat.size(layer.rows(), layer.cols(), layer.groups(), bits, layer.outliers(), 2,
                    Arrays.stream(layer.offset()).anyMatch(o -> o < Short.MIN_VALUE || o > Short.MAX_VALUE) ? 4 : 2),
                    bytes.length, "trial " + trial + " (value width " + v + " expected when codes are far)");
        }
    }

    /** Dequantized values are s·(code − zero) from the fp16 scale, outliers included, rounded once to float32. */
    @Test
    void dequantizeIsTheLatticePoint() {
        double[][] scale = {{Half.round(0.1f), Half.round(0.3f)}};
        double[][] zero = {{1, 2}};
        int[][] codes = {{0, 3, -2, 2, 9, 3}}; // bits 2: maxq 3; -2 and 9 are outliers
        SsqrLayer l = SsqrLayer.fromLattice(codes, QuantGrid.of(2, 3, 6, scale, zero));
        assertEquals(2, l.outliers());
        assertArrayEquals(new int[] {2, 4}, l.col());
        assertArrayEquals(new int[] {-3, 7}, l.offset());
        assertArrayEquals(new int[] {0, 3, 1, 2, 2, 3}, l.codes(), "zero point under each outlier");
        float[] expect = new float[6];
        for (int j = 0; j < 6; j++) {
            expect[j] = (float) (scale[0][j / 3] * (codes[0][j] - zero[0][j / 3]));
        }
        assertArrayEquals(expect, SsqrFormat.read(SsqrFormat.write(l)).dequantize());
    }

    @Test
    void bitStreamsAreLsbFirstAsDocumented() {
        // 3-bit values 1..7, 0: 1 | 2<<3 | 3<<6 ... (see the class comment)
        byte[] packed = SsqrFormat.packBits(new int[] {1, 2, 3, 4, 5, 6, 7, 0}, 3);
        assertArrayEquals(new byte[] {(byte) 0xD1, 0x58, 0x1F}, packed);
        Random rnd = new Random(4);
        for (int bits = 2; bits <= 8; bits++) {
            int[] v = rnd.ints(1 + rnd.nextInt(1000), 0, 1 << bits).toArray();
            byte[] p = SsqrFormat.packBits(v, bits);
            assertEquals((v.length * bits + 7) / 8, p.length);
            assertArrayEquals(v, SsqrFormat.unpackBits(p, 0, v.length, bits));
        }
    }

    @Test
    void wideLayersUseFourByteIndices() {
        SsqrLayer l = randomLayer(new Random(8), 2, 70_000, 3, 128, 0.001, 5);
        byte[] b = SsqrFormat.write(l);
        assertEquals(4, b[7]);
        assertArrayEquals(l.dequantize(), SsqrFormat.read(b).dequantize());
    }

    @Test
    void byteMapHeader() {
        SsqrLayer l = randomLayer(new Random(6), 3, 40, 4, 16, 0.05, 3);
        byte[] b = SsqrFormat.write(l);
        ByteBuffer buf = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(SsqrFormat.MAGIC, buf.getInt(0));
        assertEquals("BQSQ", new String(b, 0, 4, java.nio.charset.StandardCharsets.US_ASCII));
        assertEquals(1, buf.getShort(4));
        assertEquals(4, b[6]);
        assertEquals(2, b[7]);
        assertEquals(2, b[8]);
        assertEquals(3, buf.getInt(12));
        assertEquals(40, buf.getInt(16));
        assertEquals(16, buf.getInt(20));
        assertEquals(l.outliers(), buf.getInt(24));
        assertEquals(l.scale()[0], buf.getShort(28));
        long expected = 28 + 2 * 9 + (9 * 4 + 7) / 8 + (120 * 4 + 7) / 8 + 2 * 3 + 4L * l.outliers();
        assertEquals(expected, b.length);
    }

    @Test
    void everyTruncationIsAClearError() {
        byte[] full = SsqrFormat.write(randomLayer(new Random(1), 4, 21, 3, 8, 0.1, 4));
        for (int len = 0; len < full.length; len++) {
            byte[] cut = Arrays.copyOf(full, len);
            BadInputException e = assertThrows(BadInputException.class, () -> SsqrFormat.read(cut), "length " + len);
            assertTrue(e.getMessage().contains("truncated"), "length " + len + ": " + e.getMessage());
        }
        assertMessage(Arrays.copyOf(full, full.length + 2), "trailing");
    }

    @Test
    void badMagicVersionAndHeaderFields() {
        byte[] good = SsqrFormat.write(randomLayer(new Random(2), 4, 21, 3, 8, 0.1, 4));
        assertMessage(HptqFormatTest.with(good, 0, (byte) 'X'), "not an SSQR layer");
        assertMessage(HptqFormatTest.with(good, 4, (byte) 9), "version 9", "upgrade");
        assertMessage(HptqFormatTest.with(good, 6, (byte) 1), "bits per code");
        assertMessage(HptqFormatTest.with(good, 7, (byte) 3), "index width 3");
        assertMessage(HptqFormatTest.with(good, 9, (byte) 1), "reserved 1");
        assertMessage(HptqFormatTest.withInt(good, 20, 22), "group size 22");
        assertMessage(HptqFormatTest.withInt(good, 24, -1), "outliers");
        // scale 0 (fp16 bits 0x0000)
        byte[] zeroScale = good.clone();
        zeroScale[28] = 0;
        zeroScale[29] = 0;
        assertMessage(zeroScale, "scale[0][0]");
    }

    /** CSR corruption: counts that do not add up, columns out of order, an in-range outlier, a bad dense code. */
    @Test
    void corruptOutlierListsAreRejected() {
        double[][] scale = {{0.5}, {0.25}};
        double[][] zero = {{1}, {2}};
        int[][] codes = {{0, -3, 2, 5}, {9, 1, 1, -1}}; // bits 2: outliers (0,1) (0,3) (1,0) (1,3)
        SsqrLayer l = SsqrLayer.fromLattice(codes, QuantGrid.of(2, -1, 4, scale, zero));
        byte[] good = SsqrFormat.write(l);
        // 28 header + 4 scales + 1 zero byte + 2 code bytes = 35: row counts (2 × u16), then 4 columns, 4 values
        int counts = 35;
        int cols = counts + 4;
        int vals = cols + 8;
        assertEquals(vals + 8, good.length);
        ByteBuffer g = ByteBuffer.wrap(good).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(2, g.getShort(counts));
        assertEquals(1, g.getShort(cols));
        assertEquals(3, g.getShort(cols + 2));
        assertEquals(0, g.getShort(cols + 4));

        byte[] badCount = good.clone();
        ByteBuffer.wrap(badCount).order(ByteOrder.LITTLE_ENDIAN).putShort(counts, (short) 1);
        assertMessage(badCount, "add up to 3");
        byte[] overCount = good.clone();
        ByteBuffer.wrap(overCount).order(ByteOrder.LITTLE_ENDIAN).putShort(counts, (short) 5);
        assertMessage(overCount, "exceed");
        byte[] unordered = good.clone();
        ByteBuffer.wrap(unordered).order(ByteOrder.LITTLE_ENDIAN).putShort(cols + 2, (short) 1);
        assertMessage(unordered, "strictly increasing");
        byte[] outOfRange = good.clone();
        ByteBuffer.wrap(outOfRange).order(ByteOrder.LITTLE_ENDIAN).putShort(cols + 6, (short) 4);
        assertMessage(outOfRange, "columns must be below 4");
        byte[] inRange = good.clone(); // first outlier: offset −4 (code −3 with zero 1); offset 1 would be code 2
        ByteBuffer.wrap(inRange).order(ByteOrder.LITTLE_ENDIAN).putShort(vals, (short) 1);
        assertMessage(inRange, "inside 0..3");
        byte[] denseUnderOutlier = good.clone();
        // row 0 codes (2 bits each, LSB first): 0, 1(zero), 2, 1(zero) -> set the second to 3
        int codeByte = 28 + 4 + 1;
        denseUnderOutlier[codeByte] = (byte) (denseUnderOutlier[codeByte] | 0b1100);
        assertMessage(denseUnderOutlier, "not the zero point");
    }

    @Test
    void randomByteFlipsNeverEscapeAsOtherExceptions() {
        Random rnd = new Random(10);
        byte[] good = SsqrFormat.write(randomLayer(rnd, 6, 50, 3, 16, 0.08, 40));
        for (int trial = 0; trial < 3000; trial++) {
            byte[] bad = good.clone();
            for (int f = 0; f <= rnd.nextInt(3); f++) {
                bad[rnd.nextInt(bad.length)] ^= (byte) (1 << rnd.nextInt(8));
            }
            try {
                SsqrFormat.read(bad).dequantize();
            } catch (BadInputException expected) {
                // fine
            }
        }
    }

    private static void assertMessage(byte[] bytes, String... parts) {
        BadInputException e = assertThrows(BadInputException.class, () -> SsqrFormat.read(bytes));
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "expected '" + p + "' in: " + e.getMessage());
        }
    }
}
