package org.babaiquant.nonclip;

import org.babaiquant.core.Half;
import org.babaiquant.BadInputException;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The binary layout of an {@link SsqrLayer}: fp16 scales, packed zero points and codes, and the outliers in CSR form.
 *
 * <h2>Layout (version 1), little-endian</h2>
 * With R rows, C columns, group size g, G = ⌈C/g⌉ groups per row, b bits, N outliers, index width w and value
 * width v (bytes):
 * <pre>
 *  offset        size          field
 *  0             4             magic 0x42 0x51 0x53 0x51 ("BQSQ")
 *  4             2             format version (uint16) = 1
 *  6             1             b, bits per code (2 … 8)
 *  7             1             w, bytes per outlier column index and per row count: 2 if C ≤ 65535, else 4
 *  8             1             v, bytes per outlier value: 2 (int16) or 4 (int32)
 *  9             3             reserved, 0
 *  12            4             R (int32 ≥ 1)
 *  16            4             C (int32 ≥ 1), R·C &lt; 2^31
 *  20            4             g (int32, 1 … C)
 *  24            4             N (int32, 0 … R·C)
 *  28            2·R·G         scales s[r][k], fp16, row-major
 *  S = 28+2RG    ⌈R·G·b/8⌉     zero points zero[r][k] ∈ [0, 2^b − 1], b-bit bit stream
 *  Z             ⌈R·C·b/8⌉     codes z[r][j] ∈ [0, 2^b − 1], b-bit bit stream; z = zero at an outlier
 *  Q             w·R           outliers in each row (CSR row lengths: rowPtr is their running sum), unsigned
 *  Q+wR          w·N           column of each outlier, row by row, strictly increasing within a row, unsigned
 *  Q+wR+wN       v·N           outlier codes relative to the zero point, c − zero (signed), same order
 * </pre>
 * A b-bit stream stores element i at bits {@code [b·i, b·i + b)}, bit t being bit {@code t % 8} (0 = least
 * significant) of byte {@code t / 8}, as {@link org.babaiquant.core.GptqPacking} does with words; the last byte is
 * zero-padded. Nothing follows the values.
 *
 * <p>Dequantized weight: {@code s[r][j/g]·(z[r][j] − zero[r][j/g])}, except at outliers
 * {@code s[r][j/g]·(c − zero)}; see {@link SsqrLayer} for why outliers are integers and why this is exact. The stored
 * size is {@code 28 + 2RG + ⌈RGb/8⌉ + ⌈RCb/8⌉ + wR + (w+v)N} bytes, from which bits per weight are measured.
 *
 * <p>Reading rejects, with a {@link BadInputException}: a wrong magic, an unknown version, a truncated or over-long
 * stream, invalid header fields, non-finite or non-positive scales, zero points or codes out of range, row counts
 * that do not add up to N, column indices out of order or range, an outlier whose code is inside
 * {@code [0, 2^b − 1]} (then it is not an outlier), and a dense code other than the zero point under an outlier.
 */
public final class SsqrFormat {
    private SsqrFormat() {}

    public static final int MAGIC = 0x51535142; // "BQSQ" read as a little-endian int
    public static final int VERSION = 1;
    static final int HEADER = 28;
    private static final String NAME = "SSQR";

    public static byte[] write(SsqrLayer l) {
        int rows = l.rows();
        int cols = l.cols();
        int groups = l.groups();
        int nnz = l.outliers();
        int w = cols <= 0xFFFF ? 2 : 4;
        int v = 2;
        for (int k = 0; k < nnz; k++) {
            if (l.offset()[k] < Short.MIN_VALUE || l.offset()[k] > Short.MAX_VALUE) {
                v = 4;
                break;
            }
        }
        long total = size(rows, cols, groups, l.bits(), nnz, w, v);
        if (total > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("SSQR layer of " + total + " bytes exceeds a Java array");
        }
        ByteBuffer b = ByteBuffer.allocate((int) total).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(MAGIC).putShort((short) VERSION).put((byte) l.bits()).put((byte) w).put((byte) v)
                .put((byte) 0).put((byte) 0).put((byte) 0);
        b.putInt(rows).putInt(cols).putInt(l.groupSize()).putInt(nnz);
        for (short s : l.scale()) {
            b.putShort(s);
        }
        b.put(packBits(l.zero(), l.bits()));
        b.put(packBits(l.codes(), l.bits()));
        for (int r = 0; r < rows; r++) {
            putUnsigned(b, l.rowPtr()[r + 1] - l.rowPtr()[r], w);
        }
        for (int k = 0; k < nnz; k++) {
            putUnsigned(b, l.col()[k], w);
        }
        for (int k = 0; k < nnz; k++) {
            if (v == 2) {
                b.putShort((short) l.offset()[k]);
            } else {
                b.putInt(l.offset()[k]);
            }
        }
        if (b.hasRemaining()) {
            throw new IllegalStateException("SSQR writer left " + b.remaining() + " bytes unwritten");
        }
        return b.array();
    }

    /** The stored size in bytes (see the class comment). */
    public static long size(int rows, int cols, int groups, int bits, long nnz, int indexBytes, int valueBytes) {
        long rg = (long) rows * groups;
        return HEADER + 2 * rg + (rg * bits + 7) / 8 + ((long) rows * cols * bits + 7) / 8
                + (long) indexBytes * rows + (indexBytes + valueBytes) * nnz;
    }

    public static SsqrLayer read(byte[] bytes) {
        ByteReader in = new ByteReader(bytes, NAME);
        int magic = in.i32("magic");
        if (magic != MAGIC) {
            throw new BadInputException(String.format("not an SSQR layer: magic 0x%08x, expected 0x%08x (\"BQSQ\")",
                    magic, MAGIC));
        }
        int version = in.u16("version");
        if (version != VERSION) {
            throw new BadInputException("SSQR format version " + version + " is not supported by this reader (it reads "
                    + "version " + VERSION + ")" + (version > VERSION ? "; upgrade babai-quant to read it" : ""));
        }
        int bits = in.u8("bits");
        int w = in.u8("index width");
        int v = in.u8("value width");
        int reserved = in.u8("reserved") | in.u8("reserved") | in.u8("reserved");
        if (bits < 2 || bits > 8) {
            throw new BadInputException("SSQR header: " + bits + " bits per code, expected 2..8");
        }
        if ((w != 2 && w != 4) || (v != 2 && v != 4) || reserved != 0) {
            throw new BadInputException("SSQR header: index width " + w + ", value width " + v + ", reserved "
                    + reserved + "; expected widths 2 or 4 and reserved 0");
        }
        int rows = in.i32("rows");
        int cols = in.i32("cols");
        int gs = in.i32("group size");
        int nnz = in.i32("outlier count");
        if (rows < 1 || cols < 1 || (long) rows * cols > Integer.MAX_VALUE - 8) {
            throw new BadInputException("SSQR header: invalid shape " + rows + "x" + cols);
        }
        if (gs < 1 || gs > cols) {
            throw new BadInputException("SSQR header: group size " + gs + " outside 1.." + cols);
        }
        if (nnz < 0 || nnz > (long) rows * cols) {
            throw new BadInputException("SSQR header: " + nnz + " outliers in a " + rows + "x" + cols + " matrix");
        }
        if (w == 2 && cols > 0xFFFF) {
            throw new BadInputException("SSQR header: 2-byte column indices cannot address " + cols + " columns");
        }
        int groups = (cols + gs - 1) / gs;
        int maxq = (1 << bits) - 1;
        in.need(size(rows, cols, groups, bits, nnz, w, v) - HEADER, "body of a " + rows + "x" + cols + " layer with "
                + nnz + " outliers");

        short[] scale = new short[rows * groups];
        for (int i = 0; i < scale.length; i++) {
            scale[i] = in.i16("scales");
            float s = Half.toFloat(scale[i]);
            if (!(s > 0) || Float.isInfinite(s)) {
                throw new BadInputException("SSQR scale[" + i / groups + "][" + i % groups + "] = " + s
                        + " is not finite and positive");
            }
        }
        int zeroAt = in.skip(((long) scale.length * bits + 7) / 8, "zero points");
        int[] zero = unpackBits(bytes, zeroAt, scale.length, bits);
        int[] codes = unpackBits(bytes, in.skip(((long) rows * cols * bits + 7) / 8, "codes"), rows * cols, bits);
        int[] rowPtr = new int[rows + 1];
        for (int r = 0; r < rows; r++) {
            long next = (long) rowPtr[r] + getUnsigned(in, w, "row counts");
            if (next > nnz) {
                throw new BadInputException("SSQR row counts exceed the " + nnz + " outliers in the header (row " + r
                        + ")");
            }
            rowPtr[r + 1] = (int) next;
        }
        if (rowPtr[rows] != nnz) {
            throw new BadInputException("SSQR row counts add up to " + rowPtr[rows] + " but the header says " + nnz
                    + " outliers");
        }
        int[] col = new int[nnz];
        for (int k = 0; k < nnz; k++) {
            col[k] = (int) getUnsigned(in, w, "outlier columns");
        }
        int[] offset = new int[nnz];
        for (int k = 0; k < nnz; k++) {
            offset[k] = v == 2 ? in.i16("outlier values") : in.i32("outlier values");
        }
        in.end();
        for (int r = 0; r < rows; r++) {
            for (int k = rowPtr[r]; k < rowPtr[r + 1]; k++) {
                int j = col[k];
                if (j < 0 || j >= cols || (k > rowPtr[r] && j <= col[k - 1])) {
                    throw new BadInputException("SSQR outlier " + k + " (row " + r + ") has column " + j
                            + ": columns must be below " + cols + " and strictly increasing within a row");
                }
                int z = zero[r * groups + j / gs];
                long c = (long) z + offset[k];
                if (c >= 0 && c <= maxq) {
                    throw new BadInputException("SSQR outlier at [" + r + ", " + j + "] has code " + c + ", inside 0.."
                            + maxq + ": corrupt outlier list");
                }
                if (codes[r * cols + j] != z) {
                    throw new BadInputException("SSQR dense code under the outlier at [" + r + ", " + j + "] is "
                            + codes[r * cols + j] + ", not the zero point " + z + ": corrupt layer");
                }
            }
        }
        return new SsqrLayer(bits, gs, rows, cols, scale, zero, codes, rowPtr, col, offset);
    }

    /** b-bit little-endian bit stream of values in [0, 2^b); see the class comment. */
    static byte[] packBits(int[] values, int bits) {
        byte[] out = new byte[(int) (((long) values.length * bits + 7) / 8)];
        int mask = (1 << bits) - 1;
        long acc = 0;
        int nbits = 0;
        int p = 0;
        for (int i = 0; i < values.length; i++) {
            int x = values[i];
            if ((x & ~mask) != 0) {
                throw new IllegalArgumentException("value " + x + " at " + i + " does not fit " + bits + " bits");
            }
            acc |= (long) x << nbits;
            nbits += bits;
            while (nbits >= 8) {
                out[p++] = (byte) acc;
                acc >>>= 8;
                nbits -= 8;
            }
        }
        if (nbits > 0) {
            out[p] = (byte) acc;
        }
        return out;
    }

    static int[] unpackBits(byte[] src, int offset, int n, int bits) {
        int[] out = new int[n];
        int mask = (1 << bits) - 1;
        long acc = 0;
        int nbits = 0;
        int p = offset;
        for (int i = 0; i < n; i++) {
            while (nbits < bits) {
                acc |= (src[p++] & 0xFFL) << nbits;
                nbits += 8;
            }
            out[i] = (int) (acc & mask);
            acc >>>= bits;
            nbits -= bits;
        }
        return out;
    }

    private static void putUnsigned(ByteBuffer b, int x, int width) {
        if (width == 2) {
            b.putShort((short) x);
        } else {
            b.putInt(x);
        }
    }

    private static long getUnsigned(ByteReader in, int width, String field) {
        return width == 2 ? in.u16(field) : in.i32(field) & 0xFFFFFFFFL;
    }
}
