package org.babaiquant.nonclip;

import org.babaiquant.BadInputException;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The binary layout of an {@link HptqLayer}: one scale, a canonical Huffman code built for this matrix (its length
 * table) and the codewords of all weights. HPTQ and HRTN layers share it.
 *
 * <h2>Layout (version 1), little-endian</h2>
 * <pre>
 *  offset   size     field
 *  0        4        magic 0x42 0x51 0x48 0x46 ("BQHF")
 *  4        2        format version (uint16) = 1
 *  6        1        kind (uint8): 0 = HRTN (round to nearest), 1 = HPTQ (GPTQ without clipping)
 *  7        1        reserved, 0
 *  8        4        rows R (int32 ≥ 1)
 *  12       4        cols C (int32 ≥ 1), R·C &lt; 2^31
 *  16       4        scale s (float32, finite, &gt; 0): weight = s · code
 *  20       4        minCode m (int32): symbol k stands for code m + k
 *  24       4        K, alphabet size (int32, 1 … 2^20)
 *  28       K        code length of symbol k (uint8; 0 = absent, 1 … 24), canonical as in {@link CanonicalHuffman}
 *  28+K     8        payload length B in bits (int64)
 *  36+K     ⌈B/8⌉    payload: the R·C codewords, row-major, most significant bit first, zero-padded
 * </pre>
 * Nothing follows the payload. The stored size, {@code 36 + K + ⌈B/8⌉} bytes, is what bits per weight are computed
 * from; the table and the scale are in it.
 *
 * <p>Reading rejects, with a {@link BadInputException} that says what to do: a wrong magic (not an HPTQ layer), a
 * version this reader does not know, a short or over-long stream, an invalid header field, a corrupt Huffman table
 * (lengths over 24, over-subscribed or incomplete), and a payload that does not decode to exactly R·C codewords in B
 * bits.
 */
public final class HptqFormat {
    private HptqFormat() {}

    public static final int MAGIC = 0x46485142; // "BQHF" read as a little-endian int
    public static final int VERSION = 1;
    static final int HEADER = 28;
    private static final String NAME = "HPTQ";

    /** The codes' range and symbol counts: all that sizing a layer needs. */
    public record Histogram(int minCode, long[] freq) {
        public static Histogram of(int[] codes) {
            int lo = Integer.MAX_VALUE;
            int hi = Integer.MIN_VALUE;
            for (int c : codes) {
                lo = Math.min(lo, c);
                hi = Math.max(hi, c);
            }
            long[] f = new long[alphabet(lo, hi)];
            for (int c : codes) {
                f[c - lo]++;
            }
            return new Histogram(lo, f);
        }

        public static Histogram of(int[][] codes) {
            int lo = Integer.MAX_VALUE;
            int hi = Integer.MIN_VALUE;
            for (int[] row : codes) {
                for (int c : row) {
                    lo = Math.min(lo, c);
                    hi = Math.max(hi, c);
                }
            }
            long[] f = new long[alphabet(lo, hi)];
            for (int[] row : codes) {
                for (int c : row) {
                    f[c - lo]++;
                }
            }
            return new Histogram(lo, f);
        }

        private static int alphabet(int lo, int hi) {
            long k = (long) hi - lo + 1;
            if (k > CanonicalHuffman.MAX_ALPHABET) {
                throw new IllegalArgumentException("codes span " + lo + " … " + hi + " (" + k + " symbols), more than "
                        + "the " + CanonicalHuffman.MAX_ALPHABET + " a Huffman table holds: the scale is too small");
            }
            return (int) k;
        }
    }

    /** Exactly the bytes {@link #write} produces for codes with this histogram, without encoding them. */
    public static long encodedBytes(Histogram hist) {
        byte[] lengths = CanonicalHuffman.codeLengths(hist.freq());
        long bits = CanonicalHuffman.payloadBits(hist.freq(), lengths);
        return HEADER + hist.freq().length + 8 + ((bits + 7) >>> 3);
    }

    public static byte[] write(HptqLayer layer) {
        Histogram hist = Histogram.of(layer.codes());
        byte[] lengths = CanonicalHuffman.codeLengths(hist.freq());
        int k = lengths.length;
        int[] symbols = new int[layer.codes().length];
        for (int i = 0; i < symbols.length; i++) {
            symbols[i] = layer.codes()[i] - hist.minCode();
        }
        byte[] payload = CanonicalHuffman.encode(symbols, lengths);
        long bits = CanonicalHuffman.payloadBits(hist.freq(), lengths);
        long total = HEADER + k + 8L + payload.length;
        if (total > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("HPTQ layer of " + total + " bytes exceeds a Java array");
        }
        ByteBuffer b = ByteBuffer.allocate((int) total).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(MAGIC).putShort((short) VERSION).put((byte) layer.kind().code).put((byte) 0);
        b.putInt(layer.rows()).putInt(layer.cols()).putFloat(layer.scale());
        b.putInt(hist.minCode()).putInt(k).put(lengths).putLong(bits).put(payload);
        return b.array();
    }

    /** Reads a layer back, codes and all. */
    public static HptqLayer read(byte[] bytes) {
        Parsed p = parse(bytes);
        int[] symbols = new int[p.rows * p.cols];
        p.decoder.decode(bytes, p.payloadOffset, p.bits, symbols);
        for (int i = 0; i < symbols.length; i++) {
            symbols[i] += p.minCode;
        }
        return new HptqLayer(p.kind, p.rows, p.cols, p.scale, symbols);
    }

    /**
     * Straight to dequantized float32 [rows·cols] row-major, without materialising the codes: one table-driven
     * decode with a per-symbol value table {@code (float)(s·(m+k))}, equal bit for bit to
     * {@code read(bytes).dequantize()}.
     */
    public static float[] dequantize(byte[] bytes) {
        Parsed p = parse(bytes);
        float[] value = new float[p.decoder.alphabetSize()];
        double s = p.scale;
        for (int k = 0; k < value.length; k++) {
            value[k] = (float) (s * ((long) p.minCode + k));
        }
        float[] out = new float[p.rows * p.cols];
        p.decoder.decodeValues(bytes, p.payloadOffset, p.bits, value, out);
        return out;
    }

    private record Parsed(Hptq.Kind kind, int rows, int cols, float scale, int minCode,
                          CanonicalHuffman.Decoder decoder, long bits, int payloadOffset) {}

    private static Parsed parse(byte[] bytes) {
        ByteReader in = new ByteReader(bytes, NAME);
        int magic = in.i32("magic");
        if (magic != MAGIC) {
            throw new BadInputException(String.format("not an HPTQ layer: magic 0x%08x, expected 0x%08x (\"BQHF\")",
                    magic, MAGIC));
        }
        int version = in.u16("version");
        if (version != VERSION) {
            throw new BadInputException("HPTQ format version " + version + " is not supported by this reader (it reads "
                    + "version " + VERSION + ")" + (version > VERSION ? "; upgrade babai-quant to read it" : ""));
        }
        Hptq.Kind kind = Hptq.Kind.ofCode(in.u8("kind"));
        int reserved = in.u8("reserved");
        if (reserved != 0) {
            throw new BadInputException("HPTQ header byte 7 (reserved) is " + reserved + ", expected 0");
        }
        int rows = in.i32("rows");
        int cols = in.i32("cols");
        if (rows < 1 || cols < 1 || (long) rows * cols > Integer.MAX_VALUE - 8) {
            throw new BadInputException("HPTQ header: invalid shape " + rows + "x" + cols);
        }
        float scale = in.f32("scale");
        if (!(scale > 0) || Float.isInfinite(scale)) {
            throw new BadInputException("HPTQ header: scale " + scale + " is not finite and positive");
        }
        int minCode = in.i32("minCode");
        int k = in.i32("alphabet size");
        if (k < 1 || k > CanonicalHuffman.MAX_ALPHABET || (long) minCode + k - 1 > Integer.MAX_VALUE) {
            throw new BadInputException("HPTQ header: alphabet of " + k + " symbols from code " + minCode
                    + " is outside 1.." + CanonicalHuffman.MAX_ALPHABET + " or overflows int32");
        }
        byte[] lengths = new byte[k];
        System.arraycopy(bytes, in.skip(k, "code length table"), lengths, 0, k);
        CanonicalHuffman.Decoder decoder = new CanonicalHuffman.Decoder(lengths);
        long bits = in.i64("payload bit count");
        long n = (long) rows * cols;
        if (bits < n || bits > n * CanonicalHuffman.MAX_CODE_LENGTH) {
            throw new BadInputException("HPTQ header: payload of " + bits + " bits cannot hold " + n
                    + " codewords of 1.." + CanonicalHuffman.MAX_CODE_LENGTH + " bits");
        }
        int payloadOffset = in.skip((bits + 7) >>> 3, "payload");
        in.end();
        return new Parsed(kind, rows, cols, scale, minCode, decoder, bits, payloadOffset);
    }
}
