package org.babaiquant.core;

/**
 * Packs integer codes into the tensors of a GPTQ checkpoint ({@code qweight}, {@code qzeros}, {@code g_idx}) as
 * AutoGPTQ and GPTQModel write them, so that their CUDA kernels (and vLLM, TGI, transformers) load our output.
 *
 * <p><b>Bit stream.</b> Every packed tensor is a little-endian bit stream along one axis: element {@code k} of that
 * axis occupies bits {@code [bits*k, bits*k + bits)}, where bit {@code b} of the stream is bit {@code b % 32}
 * (0 = least significant) of int32 word {@code b / 32}. Words hold two's-complement int32 as in the checkpoint
 * (torch.int32); read them as unsigned.
 * <ul>
 *   <li>bits 2, 4, 8: word {@code w} holds elements {@code w*(32/bits) .. w*(32/bits) + 32/bits - 1}, element
 *       {@code j} of the word at bit {@code bits*j}, so no element crosses a word. Example, 4 bits:
 * <pre>
 *   word bits  31..28 27..24 23..20 19..16 15..12 11..8  7..4   3..0
 *   element      7      6      5      4      3      2     1      0       codes 1..8 -&gt; 0x87654321
 * </pre></li>
 *   <li>bits 3: 32 elements fill 3 words (96 bits), and elements 10 and 21 cross a word boundary:
 * <pre>
 *   word 0: e0..e9 at bits 0..29,      e10 bits 0-1 at bits 30-31
 *   word 1: e10 bit 2 at bit 0,        e11..e20 at bits 1..30,      e21 bit 0 at bit 31
 *   word 2: e21 bits 1-2 at bits 0-1,  e22..e31 at bits 2..31
 * </pre>
 *       which is exactly AutoGPTQ's {@code QuantLinear.pack} for {@code bits == 3} (its 10 + 1 + 10 + 1 + 10 loop).</li>
 * </ul>
 *
 * <p><b>Tensors.</b> Codes are {@code int[out][in]}, the nn.Linear weight layout; {@code qweight} is packed along
 * the input axis and transposed, {@code qzeros} along the output axis:
 * <pre>
 *   qweight  int32 [in * bits / 32, out]       column o = stream of codes[o][0 .. in-1]
 *   qzeros   int32 [groups, out * bits / 32]   row g    = stream of zeros[g][0 .. out-1]
 *   g_idx    int32 [in]                        g_idx[i] = group of input i
 * </pre>
 * A packed axis must be a whole number of words: a multiple of {@code 32/bits} for bits 2, 4, 8 and of 32 for
 * bits 3.
 *
 * <p><b>Zero points, v1 and v2.</b> The historical AutoGPTQ format ("v1", {@code checkpoint_format: gptq}) stores
 * {@code zero - 1} and its kernels add the 1 back; GPTQModel's "v2" ({@code checkpoint_format: gptq_v2}) stores the
 * true zero. Here v1 stores {@code (zero - 1) & (2^bits - 1)}: a zero of 0 is written as {@code 2^bits - 1} and
 * unpacks back to 0, but v1 kernels, which do not mask, dequantize it with zero {@code 2^bits}. That is the v1
 * format's known flaw; write v2, or keep zeros at least 1, when it matters.
 */
public final class GptqPacking {

    private GptqPacking() {
    }

    /**
     * Packs {@code codes[out][in]} into {@code qweight[in*bits/32][out]} (see the class comment for the layout).
     *
     * @throws IllegalArgumentException for unsupported bits, ragged rows, {@code in} not a whole number of words, or
     *                                  a code outside {@code 0 .. 2^bits - 1}
     */
    public static int[][] packQweight(int[][] codes, int bits) {
        checkBits(bits);
        int out = codes.length;
        int in = rowLength(codes, "codes");
        checkPackedAxis(in, bits, "codes [" + out + "][" + in + "]: in");
        int mask = (1 << bits) - 1;
        int[][] qweight = new int[in * bits / 32][out];
        for (int o = 0; o < out; o++) {
            int[] row = codes[o];
            for (int i = 0; i < in; i++) {
                int v = row[i];
                if ((v & ~mask) != 0) {
                    throw new IllegalArgumentException("codes[" + o + "][" + i + "] = " + v + " is outside 0.." + mask
                            + " for " + bits + " bits");
                }
                int bit = i * bits;
                int w = bit >>> 5;
                int shift = bit & 31;
                qweight[w][o] |= v << shift;
                if (shift + bits > 32) { // 3 bits only: the high bits spill into the next word
                    qweight[w + 1][o] |= v >>> (32 - shift);
                }
            }
        }
        return qweight;
    }

    /**
     * Inverse of {@link #packQweight}: {@code qweight[in*bits/32][out]} back to {@code codes[out][in]}.
     *
     * @param in the number of inputs; must equal {@code qweight.length * 32 / bits}, passed so that a qweight of
     *           the wrong layer fails here instead of producing codes of the wrong shape
     */
    public static int[][] unpackQweight(int[][] qweight, int bits, int in) {
        checkBits(bits);
        checkPackedAxis(in, bits, "in");
        int out = rowLength(qweight, "qweight");
        if (qweight.length != in * bits / 32) {
            throw new IllegalArgumentException("qweight has " + qweight.length + " rows; " + in + " inputs at " + bits
                    + " bits need " + (in * bits / 32));
        }
        int mask = (1 << bits) - 1;
        int[][] codes = new int[out][in];
        for (int o = 0; o < out; o++) {
            int[] row = codes[o];
            for (int i = 0; i < in; i++) {
                int bit = i * bits;
                int w = bit >>> 5;
                int shift = bit & 31;
                int v = qweight[w][o] >>> shift;
                if (shift + bits > 32) {
                    v |= qweight[w + 1][o] << (32 - shift);
                }
                row[i] = v & mask;
            }
        }
        return codes;
    }

    /**
     * Packs {@code zeros[groups][out]} into {@code qzeros[groups][out*bits/32]}; {@code v1} stores
     * {@code (zero - 1) & (2^bits - 1)}, v2 the zero itself (see the class comment).
     *
     * @throws IllegalArgumentException for unsupported bits, ragged rows, {@code out} not a whole number of words, or
     *                                  a zero outside {@code 0 .. 2^bits - 1}
     */
    public static int[][] packQzeros(int[][] zeros, int bits, boolean v1) {
        checkBits(bits);
        int groups = zeros.length;
        int out = rowLength(zeros, "zeros");
        checkPackedAxis(out, bits, "zeros [" + groups + "][" + out + "]: out");
        int mask = (1 << bits) - 1;
        int offset = v1 ? -1 : 0;
        int[][] qzeros = new int[groups][out * bits / 32];
        for (int g = 0; g < groups; g++) {
            int[] row = zeros[g];
            int[] packed = qzeros[g];
            for (int o = 0; o < out; o++) {
                int z = row[o];
                if ((z & ~mask) != 0) {
                    throw new IllegalArgumentException("zeros[" + g + "][" + o + "] = " + z + " is outside 0.." + mask
                            + " for " + bits + " bits");
                }
                int v = (z + offset) & mask;
                int bit = o * bits;
                int w = bit >>> 5;
                int shift = bit & 31;
                packed[w] |= v << shift;
                if (shift + bits > 32) {
                    packed[w + 1] |= v >>> (32 - shift);
                }
            }
        }
        return qzeros;
    }

    /** Inverse of {@link #packQzeros}: {@code qzeros[groups][out*bits/32]} back to {@code zeros[groups][out]}. */
    public static int[][] unpackQzeros(int[][] qzeros, int bits, int out, boolean v1) {
        checkBits(bits);
        checkPackedAxis(out, bits, "out");
        int words = rowLength(qzeros, "qzeros");
        if (qzeros.length > 0 && words != out * bits / 32) {
            throw new IllegalArgumentException("qzeros rows have " + words + " words; " + out + " outputs at " + bits
                    + " bits need " + (out * bits / 32));
        }
        int mask = (1 << bits) - 1;
        int offset = v1 ? 1 : 0;
        int[][] zeros = new int[qzeros.length][out];
        for (int g = 0; g < qzeros.length; g++) {
            int[] packed = qzeros[g];
            int[] row = zeros[g];
            for (int o = 0; o < out; o++) {
                int bit = o * bits;
                int w = bit >>> 5;
                int shift = bit & 31;
                int v = packed[w] >>> shift;
                if (shift + bits > 32) {
                    v |= packed[w + 1] << (32 - shift);
                }
                row[o] = ((v & mask) + offset) & mask;
            }
        }
        return zeros;
    }

    /**
     * The {@code g_idx} of a checkpoint quantized without act-order: input {@code i} belongs to group
     * {@code i / groupSize}; {@code groupSize == -1} (AutoGPTQ's "one group per row") puts every input in group 0.
     */
    public static int[] gIdx(int in, int groupSize) {
        if (in < 0) {
            throw new IllegalArgumentException("in = " + in + " is negative");
        }
        if (groupSize == 0 || groupSize < -1) {
            throw new IllegalArgumentException("groupSize = " + groupSize + "; expected a positive size or -1");
        }
        int[] g = new int[in];
        if (groupSize > 0) {
            for (int i = 0; i < in; i++) {
                g[i] = i / groupSize;
            }
        }
        return g;
    }

    /** Whether GPTQ kernels have a packing for this width: 2, 3, 4 and 8 bits. */
    public static boolean packableBits(int bits) {
        return bits == 2 || bits == 3 || bits == 4 || bits == 8;
    }

    /** Elements per whole number of words on a packed axis: {@code 32/bits} for 2, 4, 8 bits, 32 for 3 bits. */
    public static int wordUnit(int bits) {
        checkBits(bits);
        return bits == 3 ? 32 : 32 / bits;
    }

    /**
     * The one packability rule: {@code codes[rows][cols]} can be stored as a GPTQ {@code qweight} when the width has a
     * packing, {@code cols} is a whole number of words and every code is in {@code 0 .. 2^bits − 1} (no-clip codes
     * outside it are not).
     */
    public static boolean packable(int[][] codes, int cols, int bits) {
        if (!packableBits(bits) || cols % wordUnit(bits) != 0) {
            return false;
        }
        int maxq = (1 << bits) - 1;
        for (int[] row : codes) {
            for (int v : row) {
                if (v < 0 || v > maxq) {
                    return false;
                }
            }
        }
        return true;
    }

    /**
     * Why a whole layer [rows, cols] cannot go into a GPTQ checkpoint (both axes are packed: qweight along the inputs,
     * qzeros along the outputs), or null when it can.
     */
    public static String checkpointProblem(int rows, int cols, int bits) {
        if (!packableBits(bits)) {
            return bits + "-bit codes cannot be stored in the GPTQ format (2, 3, 4 or 8 bits)";
        }
        int per = wordUnit(bits);
        if (cols % per != 0 || rows % per != 0) {
            return "GPTQ packing needs both dimensions to be multiples of " + per + " at " + bits + " bits";
        }
        return null;
    }

    /**
     * Bits per weight of the GPTQ checkpoint layout: int32-packed codes along the input dimension, int32-packed zeros
     * along the output dimension, one fp16 scale per (group, row), and an int32 g_idx per input column when the order is
     * not natural (act-order checkpoints store it).
     */
    public static double bitsPerWeight(int rows, int cols, int bits, int groups, boolean gIdx) {
        long codeWords = ((long) cols * bits + 31) / 32 * rows;
        long zeroWords = (long) groups * (((long) rows * bits + 31) / 32);
        long scaleBits = (long) groups * rows * 16;
        long total = 32 * (codeWords + zeroWords) + scaleBits + (gIdx ? 32L * cols : 0);
        return (double) total / ((double) rows * cols);
    }

    private static void checkBits(int bits) {
        if (!packableBits(bits)) {
            throw new IllegalArgumentException("bits = " + bits + "; GPTQ packing supports 2, 3, 4, 8");
        }
    }

    /** A packed axis must end on a word boundary, else the last word would be shared with nothing. */
    private static void checkPackedAxis(int n, int bits, String what) {
        int unit = wordUnit(bits);
        if (n < 0 || n % unit != 0) {
            throw new IllegalArgumentException(what + " = " + n + " must be a multiple of " + unit + " for " + bits
                    + "-bit packing");
        }
    }

    /** Common row length (0 for no rows); null or ragged rows are an IllegalArgumentException. */
    private static int rowLength(int[][] m, String name) {
        if (m == null) {
            throw new IllegalArgumentException(name + " is null");
        }
        int n = m.length == 0 ? 0 : lengthOf(m, 0, name);
        for (int r = 1; r < m.length; r++) {
            if (lengthOf(m, r, name) != n) {
                throw new IllegalArgumentException(name + " is ragged: row 0 has " + n + " columns, row " + r + " has "
                        + m[r].length);
            }
        }
        return n;
    }

    private static int lengthOf(int[][] m, int r, String name) {
        if (m[r] == null) {
            throw new IllegalArgumentException(name + "[" + r + "] is null");
        }
        return m[r].length;
    }
}
