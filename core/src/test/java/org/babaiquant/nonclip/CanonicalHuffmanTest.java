package org.babaiquant.nonclip;

import org.babaiquant.BadInputException;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CanonicalHuffmanTest {

    /** The example in the class comment: lengths [2, 1, 3, 3] give 10, 0, 110, 111. */
    @Test
    void canonicalCodesOfTheClassComment() {
        byte[] lengths = {2, 1, 3, 3};
        assertArrayEquals(new int[] {0b10, 0b0, 0b110, 0b111}, CanonicalHuffman.canonicalCodes(lengths));
        // symbols 1, 0, 2, 3 -> 0 10 110 111 -> 0101 1011 1(000 0000)
        byte[] enc = CanonicalHuffman.encode(new int[] {1, 0, 2, 3}, lengths);
        assertArrayEquals(new byte[] {0x5B, (byte) 0x80}, enc);
        int[] back = new int[4];
        new CanonicalHuffman.Decoder(lengths).decode(enc, 0, 9, back);
        assertArrayEquals(new int[] {1, 0, 2, 3}, back);
    }

    /** CLRS's example (a:45 b:13 c:12 d:16 e:9 f:5): an optimal code costs 224 bits. */
    @Test
    void lengthsAreOptimalOnTheTextbookExample() {
        long[] freq = {45, 13, 12, 16, 9, 5};
        byte[] lengths = CanonicalHuffman.codeLengths(freq);
        assertEquals(224, CanonicalHuffman.payloadBits(freq, lengths));
        assertEquals(1, lengths[0]);
    }

    /** Shannon: an optimal prefix code's mean length L satisfies H ≤ L < H + 1 (H the entropy of the counts). */
    @Test
    void meanLengthIsWithinOneBitOfTheEntropy() {
        Random rnd = new Random(3);
        for (int trial = 0; trial < 200; trial++) {
            int k = 2 + rnd.nextInt(300);
            long[] freq = new long[k];
            long total = 0;
            for (int s = 0; s < k; s++) {
                freq[s] = rnd.nextInt(4) == 0 ? 0 : (long) Math.ceil(Math.exp(rnd.nextGaussian() * 2) * 100);
                total += freq[s];
            }
            if (total == 0) {
                continue;
            }
            double entropy = 0;
            int present = 0;
            for (long f : freq) {
                if (f > 0) {
                    double p = f / (double) total;
                    entropy -= p * Math.log(p) / Math.log(2);
                    present++;
                }
            }
            double mean = CanonicalHuffman.payloadBits(freq, CanonicalHuffman.codeLengths(freq)) / (double) total;
            double floor = present == 1 ? 1 : entropy; // one symbol still costs its one-bit codeword
            assertTrue(mean >= floor - 1e-12 && mean < Math.max(entropy + 1, 1 + 1e-12),
                    "trial " + trial + ": mean length " + mean + ", entropy " + entropy);
        }
    }

    @Test
    void randomStreamsRoundTrip() {
        Random rnd = new Random(17);
        for (int trial = 0; trial < 60; trial++) {
            int k = 1 + rnd.nextInt(trial < 30 ? 20 : 5000);
            int n = 1 + rnd.nextInt(20_000);
            double spread = 0.3 + rnd.nextDouble() * 20;
            int[] sym = new int[n];
            long[] freq = new long[k];
            for (int i = 0; i < n; i++) {
                sym[i] = (int) Math.min(k - 1, Math.abs(rnd.nextGaussian() * spread));
                freq[sym[i]]++;
            }
            byte[] lengths = CanonicalHuffman.codeLengths(freq);
            long bits = CanonicalHuffman.payloadBits(freq, lengths);
            byte[] enc = CanonicalHuffman.encode(sym, lengths);
            assertEquals((bits + 7) / 8, enc.length);
            int[] back = new int[n];
            CanonicalHuffman.Decoder dec = new CanonicalHuffman.Decoder(lengths);
            dec.decode(enc, 0, bits, back);
            assertArrayEquals(sym, back, "trial " + trial);
            float[] value = new float[k];
            for (int s = 0; s < k; s++) {
                value[s] = s * 0.5f - 3;
            }
            float[] vals = new float[n];
            dec.decodeValues(enc, 0, bits, value, vals);
            for (int i = 0; i < n; i++) {
                assertEquals(value[sym[i]], vals[i]);
            }
        }
    }

    /**
     * Fibonacci counts make Huffman's tree a path: 40 symbols would need 39-bit codes. The limit rebalances them to
     * ≤ 24 bits, keeps the code complete, and the long codes (decoded off the primary table) still round trip.
     */
    @Test
    void fibonacciCountsAreLengthLimitedAndStillRoundTrip() {
        int k = 40;
        long[] freq = new long[k];
        freq[0] = 1;
        freq[1] = 1;
        for (int s = 2; s < k; s++) {
            freq[s] = freq[s - 1] + freq[s - 2];
        }
        byte[] lengths = CanonicalHuffman.codeLengths(freq);
        int max = 0;
        for (byte l : lengths) {
            max = Math.max(max, l);
        }
        assertEquals(CanonicalHuffman.MAX_CODE_LENGTH, max);
        assertEquals(k, CanonicalHuffman.validate(lengths));
        // every symbol once, plus many of the frequent ones (a stream of 10^8 would be needed for the real counts)
        Random rnd = new Random(5);
        int[] sym = new int[50_000];
        for (int i = 0; i < sym.length; i++) {
            sym[i] = i < k ? i : k - 1 - Math.min(k - 1, (int) (-Math.log(rnd.nextDouble()) * 2));
        }
        long bits = 0;
        for (int s : sym) {
            bits += lengths[s];
        }
        byte[] enc = CanonicalHuffman.encode(sym, lengths);
        int[] back = new int[sym.length];
        new CanonicalHuffman.Decoder(lengths).decode(enc, 0, bits, back);
        assertArrayEquals(sym, back);
    }

    @Test
    void singleSymbolUsesOneBitPerSymbol() {
        byte[] lengths = CanonicalHuffman.codeLengths(new long[] {0, 0, 7});
        assertArrayEquals(new byte[] {0, 0, 1}, lengths);
        byte[] enc = CanonicalHuffman.encode(new int[] {2, 2, 2, 2, 2, 2, 2}, lengths);
        assertArrayEquals(new byte[] {0}, enc);
        int[] back = new int[7];
        new CanonicalHuffman.Decoder(lengths).decode(enc, 0, 7, back);
        assertArrayEquals(new int[] {2, 2, 2, 2, 2, 2, 2}, back);
        // the unused codeword "1" matches nothing
        BadInputException e = assertThrows(BadInputException.class,
                () -> new CanonicalHuffman.Decoder(lengths).decode(new byte[] {(byte) 0x80}, 0, 7, new int[7]));
        assertTrue(e.getMessage().contains("match no codeword"), e.getMessage());
    }

    @Test
    void corruptTablesAreRejectedWithTheReason() {
        assertCorrupt(new byte[] {1, 1, 1}, "over-subscribed");
        assertCorrupt(new byte[] {1, 2}, "incomplete");
        assertCorrupt(new byte[] {1, 25}, "> 24");
        assertCorrupt(new byte[] {0, 0}, "no symbol");
        assertCorrupt(new byte[] {0, 2}, "single symbol");
        assertCorrupt(new byte[0], "alphabet size 0");
    }

    private static void assertCorrupt(byte[] lengths, String reason) {
        BadInputException e = assertThrows(BadInputException.class, () -> new CanonicalHuffman.Decoder(lengths));
        assertTrue(e.getMessage().startsWith("corrupt Huffman table") && e.getMessage().contains(reason),
                e.getMessage());
    }

    @Test
    void payloadWhoseBitCountDoesNotMatchIsRejected() {
        byte[] lengths = {2, 1, 3, 3};
        byte[] enc = CanonicalHuffman.encode(new int[] {1, 0, 2, 3}, lengths); // 9 bits
        BadInputException more = assertThrows(BadInputException.class,
                () -> new CanonicalHuffman.Decoder(lengths).decode(enc, 0, 10, new int[4]));
        assertTrue(more.getMessage().contains("left over"), more.getMessage());
        BadInputException less = assertThrows(BadInputException.class,
                () -> new CanonicalHuffman.Decoder(lengths).decode(enc, 0, 8, new int[4]));
        assertTrue(less.getMessage().contains("inside a codeword"), less.getMessage());
        assertThrows(BadInputException.class,
                () -> new CanonicalHuffman.Decoder(lengths).decode(enc, 0, 17, new int[4]), "more bytes than given");
    }
}
