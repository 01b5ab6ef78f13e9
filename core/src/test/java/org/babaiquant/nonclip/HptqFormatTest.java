package org.babaiquant.nonclip;

import org.babaiquant.BadInputException;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class HptqFormatTest {

    private static HptqLayer randomLayer(Random rnd, int rows, int cols, double spread) {
        int[] codes = new int[rows * cols];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = (int) Math.rint(rnd.nextGaussian() * spread * (rnd.nextInt(50) == 0 ? 8 : 1));
        }
        return new HptqLayer(rnd.nextBoolean() ? Hptq.Kind.HPTQ : Hptq.Kind.HRTN, rows, cols,
                (float) (0.01 + rnd.nextDouble()), codes);
    }

    @Test
    void layersRoundTripExactlyAndTheSizeIsKnownBeforeWriting() {
        Random rnd = new Random(23);
        for (int trial = 0; trial < 40; trial++) {
            HptqLayer layer = randomLayer(rnd, 1 + rnd.nextInt(40), 1 + rnd.nextInt(300), 0.2 + rnd.nextDouble() * 30);
            byte[] bytes = HptqFormat.write(layer);
            assertEquals(HptqFormat.encodedBytes(HptqFormat.Histogram.of(layer.codes())), bytes.length);
            HptqLayer back = HptqFormat.read(bytes);
            assertEquals(layer.kind(), back.kind());
            assertEquals(layer.rows(), back.rows());
            assertEquals(layer.cols(), back.cols());
            assertEquals(layer.scale(), back.scale());
            assertArrayEquals(layer.codes(), back.codes());
            assertArrayEquals(layer.dequantize(), HptqFormat.dequantize(bytes), "fast path = codes · scale");
        }
    }

    /** The header fields sit where the byte map says. */
    @Test
    void byteMap() {
        HptqLayer layer = new HptqLayer(Hptq.Kind.HPTQ, 2, 3, 0.5f, new int[] {-1, 0, 0, 0, 1, 0});
        byte[] b = HptqFormat.write(layer);
        ByteBuffer buf = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals('B', b[0]);
        assertEquals('Q', b[1]);
        assertEquals('H', b[2]);
        assertEquals('F', b[3]);
        assertEquals(1, buf.getShort(4));
        assertEquals(1, b[6]);
        assertEquals(0, b[7]);
        assertEquals(2, buf.getInt(8));
        assertEquals(3, buf.getInt(12));
        assertEquals(0.5f, buf.getFloat(16));
        assertEquals(-1, buf.getInt(20));
        assertEquals(3, buf.getInt(24));
        // symbol 1 (code 0) is most frequent: length 1; codes −1 and 1 get length 2
        assertArrayEquals(new byte[] {2, 1, 2}, new byte[] {b[28], b[29], b[30]});
        // canonical: code 0 -> "0", code -1 -> "10", code 1 -> "11"; stream 10 0 0 0 11 0 = 8 bits
        assertEquals(8, buf.getLong(31));
        assertEquals((byte) 0b10000110, b[39]);
        assertEquals(40, b.length);
    }

    @Test
    void everyTruncationIsAClearError() {
        byte[] full = HptqFormat.write(randomLayer(new Random(1), 5, 17, 3));
        for (int len = 0; len < full.length; len++) {
            byte[] cut = java.util.Arrays.copyOf(full, len);
            BadInputException e = assertThrows(BadInputException.class, () -> HptqFormat.read(cut), "length " + len);
            assertTrue(e.getMessage().contains("truncated"), "length " + len + ": " + e.getMessage());
        }
        byte[] longer = java.util.Arrays.copyOf(full, full.length + 1);
        BadInputException e = assertThrows(BadInputException.class, () -> HptqFormat.read(longer));
        assertTrue(e.getMessage().contains("trailing"), e.getMessage());
    }

    @Test
    void badMagicVersionAndHeaderFields() {
        byte[] good = HptqFormat.write(randomLayer(new Random(2), 3, 8, 2));
        assertMessage(with(good, 0, (byte) 'X'), "not an HPTQ layer");
        assertMessage(with(good, 4, (byte) 2), "version 2", "upgrade");
        assertMessage(with(good, 4, (byte) 0), "version 0");
        assertMessage(with(good, 6, (byte) 7), "unknown kind 7");
        assertMessage(with(good, 7, (byte) 1), "reserved");
        assertMessage(withInt(good, 8, 0), "invalid shape");
        assertMessage(withInt(good, 16, Float.floatToIntBits(-1f)), "scale");
        assertMessage(withInt(good, 16, Float.floatToIntBits(Float.NaN)), "scale");
        assertMessage(withInt(good, 24, 0), "alphabet");
    }

    @Test
    void corruptHuffmanTableIsNamed() {
        HptqLayer layer = new HptqLayer(Hptq.Kind.HRTN, 1, 6, 1f, new int[] {0, 0, 0, 1, 2, 2});
        byte[] good = HptqFormat.write(layer);
        // lengths at 28..30 are {1, 2, 2}; making the first 2 gives Kraft 3/4: incomplete
        assertMessage(with(good, 28, (byte) 2), "corrupt Huffman table", "incomplete");
        assertMessage(with(good, 29, (byte) 1), "corrupt Huffman table", "over-subscribed");
        assertMessage(with(good, 30, (byte) 30), "corrupt Huffman table", "> 24");
    }

    @Test
    void payloadThatDoesNotDecodeToRowsTimesColsIsRejected() {
        HptqLayer layer = new HptqLayer(Hptq.Kind.HRTN, 1, 6, 1f, new int[] {0, 0, 0, 1, 2, 2});
        byte[] good = HptqFormat.write(layer); // lengths {1,2,2}: 3·1 + 3·2 = 9 bits, 2 bytes of payload
        ByteBuffer buf = ByteBuffer.wrap(good).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(9, buf.getLong(31));
        byte[] tenBits = good.clone();
        ByteBuffer.wrap(tenBits).order(ByteOrder.LITTLE_ENDIAN).putLong(31, 10);
        assertMessage(tenBits, "Huffman payload corrupt");
        byte[] fewBits = good.clone();
        ByteBuffer.wrap(fewBits).order(ByteOrder.LITTLE_ENDIAN).putLong(31, 3);
        assertMessage(fewBits, "cannot hold 6 codewords");
    }

    /** Random corruption anywhere gives a BadInputException or a valid layer, never another exception. */
    @Test
    void randomByteFlipsNeverEscapeAsOtherExceptions() {
        Random rnd = new Random(9);
        byte[] good = HptqFormat.write(randomLayer(rnd, 7, 33, 4));
        for (int trial = 0; trial < 3000; trial++) {
            byte[] bad = good.clone();
            for (int f = 0; f <= rnd.nextInt(3); f++) {
                bad[rnd.nextInt(bad.length)] ^= (byte) (1 << rnd.nextInt(8));
            }
            try {
                HptqFormat.read(bad);
                HptqFormat.dequantize(bad);
            } catch (BadInputException expected) {
                // fine: the message was built, nothing else escaped
            }
        }
    }

    static byte[] with(byte[] b, int at, byte v) {
        byte[] c = b.clone();
        c[at] = v;
        return c;
    }

    static byte[] withInt(byte[] b, int at, int v) {
        byte[] c = b.clone();
        ByteBuffer.wrap(c).order(ByteOrder.LITTLE_ENDIAN).putInt(at, v);
        return c;
    }

    private static void assertMessage(byte[] bytes, String... parts) {
        BadInputException e = assertThrows(BadInputException.class, () -> HptqFormat.read(bytes));
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "expected '" + p + "' in: " + e.getMessage());
        }
    }
}
